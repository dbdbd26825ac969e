"""The REST API for identity data: consent, gallery, erasure, policy, trajectories and the audit log.

Every endpoint here needs ``Authorization: Bearer <token>`` and one of the roles it names (401 without a
valid token, 403 with the wrong role). Every call that reads or changes identity data, and every refused
call, is appended to the audit log with the token holder's name. Templates (embeddings) are never served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from dashboard import metrics as M
from dashboard.auth import Principal, Role
from dashboard.services import Services, consent_row
from policy.audit import audit_dir, read_records
from policy.consent import ConsentError
from policy.crypto import KeyUnavailable
from policy.notary import verify_with
from policy.policyfile import PolicyError, parse_policy

bearer = HTTPBearer(auto_error=False, description="API token: `paxsim dashboard-token issue --role ROLE --name NAME`")

SubjectId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$", description="subject id, e.g. pax-00012")]

ANY = (Role.admin, Role.operator, Role.auditor)


def svc(request: Request) -> Services:
    return request.app.state.services


def require(*roles: Role, endpoint: str) -> Callable[..., Principal]:
    """Dependency: the caller's principal if its token is valid and its role is one of ``roles``; audits refusals."""

    def dep(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        s = svc(request)
        client = request.client.host if request.client else "?"
        # a throttled client's token is checked only where that is free (verified before): no scrypt per guess
        who = s.tokens.authenticate(cred.credentials, slow=not s.failed_auth.throttled(client)) if cred is not None else None
        if who is None:
            M.API_IDENTITY.labels(endpoint, "unauthenticated").inc()
            audit_n, wait_s = s.failed_auth.note(client)
            if audit_n is not None:  # one record per client per window, saying how many refusals it stands for
                rule = "unauthenticated" if audit_n == 1 else f"unauthenticated x{audit_n}"
                s.audit(None, f"api.{endpoint}", "deny", rule=rule, object_id=f"{client} {request.method} {request.url.path}"[:200])
            if wait_s is not None:
                M.API_IDENTITY.labels(endpoint, "throttled").inc()
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    "too many failed authentications",
                    headers={"Retry-After": str(max(1, round(wait_s)))},
                )
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid API token is required", headers={"WWW-Authenticate": "Bearer"})
        if who.role not in roles:
            M.API_IDENTITY.labels(endpoint, "forbidden").inc()
            s.audit(who, f"api.{endpoint}", "deny", rule=f"role:{who.role.value}", object_id=f"{request.method} {request.url.path}"[:200])
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"role {who.role.value!r} may not use this endpoint; needs one of {[r.value for r in roles]}"
            )
        M.API_IDENTITY.labels(endpoint, "allowed").inc()
        return who

    return dep


router = APIRouter(prefix="/api", responses={401: {"description": "no valid API token"}, 403: {"description": "wrong role"}})

# ---------------------------------------------------------------------------------------------- models


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ConsentGrant(_In):
    subject_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
    purpose: str = Field(min_length=1, max_length=64)
    ttl_s: float = Field(default=365 * 86400.0, gt=0, le=10 * 365 * 86400.0, description="validity from now, seconds")
    zones: list[str] = Field(default_factory=list, max_length=32, description="limit to these zones; empty = all")


class ErasureIn(_In):
    subject_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
    reason: str = Field(default="erasure-request", min_length=1, max_length=200)


class PolicyText(_In):
    text: str = Field(max_length=64_000, description="a policy file (YAML)")


class ConsentOut(BaseModel):
    subject_id: str
    purpose: str
    granted_at: float
    expires_at: float
    zones: list[str]
    withdrawn_at: float | None
    status: str


class ErasureOut(BaseModel):
    request_id: str
    subject_id: str
    requested_at: float
    reason: str
    published_at: float | None = None
    applied_in_dashboard_s: float | None = Field(default=None, description="request → gone from the dashboard's store")


class VisitOut(BaseModel):
    event_id: str
    captured_at: float
    zone: str
    camera_id: str
    purpose: str
    prev_zone: str | None
    plausible: bool


class Whoami(BaseModel):
    name: str
    role: Role


# ---------------------------------------------------------------------------------------------- who


@router.get("/whoami", tags=["auth"], response_model=Whoami)
def whoami(who: Annotated[Principal, Depends(require(*ANY, endpoint="whoami"))]) -> Whoami:
    """The token holder's name and role."""
    return Whoami(name=who.name, role=who.role)


# ---------------------------------------------------------------------------------------------- consent


@router.get("/consent", tags=["consent"], response_model=list[ConsentOut])
def consent_list(
    request: Request,
    who: Annotated[Principal, Depends(require(Role.admin, Role.auditor, endpoint="consent.list"))],
    purpose: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict]:
    """Consent records (identity data: audited)."""
    s = svc(request)
    s.registry.refresh(force=True)
    now = time.time()
    rows = sorted((r for r in s.registry.all() if purpose is None or r.purpose == purpose), key=lambda r: (r.subject_id, r.purpose))[:limit]
    s.audit(who, "api.consent.list", "allow", object_id=f"{len(rows)} records")
    return [consent_row(r, now) for r in rows]


@router.get("/consent/{subject_id}", tags=["consent"], response_model=list[ConsentOut], responses={404: {"description": "no record"}})
def consent_get(
    request: Request, subject_id: SubjectId, who: Annotated[Principal, Depends(require(Role.admin, Role.auditor, endpoint="consent.read"))]
) -> list[dict]:
    """One subject's consent records (audited)."""
    s = svc(request)
    s.registry.refresh(force=True)
    recs = list(s.registry.records.get(subject_id, {}).values())
    s.audit(who, "api.consent.read", "allow", subject_id=subject_id)
    if not recs:
        raise HTTPException(404, "no consent record for this subject")
    now = time.time()
    return [consent_row(r, now) for r in sorted(recs, key=lambda r: r.purpose)]


@router.post(
    "/consent", tags=["consent"], response_model=ConsentOut, status_code=201, responses={422: {"description": "unknown purpose or zone"}}
)
def consent_grant(
    request: Request, body: ConsentGrant, who: Annotated[Principal, Depends(require(Role.admin, endpoint="consent.grant"))]
) -> dict:
    """Grant (or renew) a subject's consent for one purpose of the policy in force (audited)."""
    s = svc(request)
    if body.purpose not in s.policy.purposes:
        raise HTTPException(422, f"unknown purpose {body.purpose!r}; the policy defines {sorted(s.policy.purposes)}")
    unknown = [z for z in body.zones if z not in s.policy.zones]
    if unknown:
        raise HTTPException(422, f"unknown zones {unknown}; the policy defines {sorted(s.policy.zones)}")
    try:
        rec = s.registry.consent(body.subject_id, body.purpose, ttl_s=body.ttl_s, zones=body.zones)
    except ConsentError as exc:
        raise HTTPException(422, str(exc)) from None
    s.audit(who, "api.consent.grant", "allow", subject_id=body.subject_id, object_id=body.purpose)
    return consent_row(rec, time.time())


@router.delete("/consent/{subject_id}", tags=["consent"], response_model=ErasureOut, responses={404: {"description": "nothing active"}})
def consent_withdraw(
    request: Request,
    subject_id: SubjectId,
    who: Annotated[Principal, Depends(require(Role.admin, endpoint="consent.withdraw"))],
    purpose: Annotated[str | None, Query(max_length=64)] = None,
) -> dict:
    """Withdraw one purpose (or all): queues an erasure request that is published to the erasure topic (audited)."""
    s = svc(request)
    req = s.registry.withdraw(subject_id, purpose=purpose)
    s.audit(who, "api.consent.withdraw", "allow" if req else "noop", subject_id=subject_id, object_id=req.request_id if req else purpose)
    if req is None:
        raise HTTPException(404, "no active consent to withdraw")
    return {"request_id": req.request_id, "subject_id": req.subject_id, "requested_at": req.requested_at, "reason": req.reason}


# ---------------------------------------------------------------------------------------------- gallery


@router.get("/gallery", tags=["gallery"])
def gallery_size(request: Request, who: Annotated[Principal, Depends(require(*ANY, endpoint="gallery.size"))]) -> dict:
    """How many templates and subjects the gallery holds (no ids, no templates)."""
    g = svc(request).gallery()
    return {"templates": len(g), "subjects": len(g.subjects())}


@router.get("/gallery/subjects", tags=["gallery"], response_model=list[str])
def gallery_subjects(request: Request, who: Annotated[Principal, Depends(require(Role.admin, endpoint="gallery.subjects"))]) -> list[str]:
    """Enrolled subject ids (identity data: audited). Templates are never served."""
    s = svc(request)
    ids = s.gallery().subjects()
    s.audit(who, "api.gallery.subjects", "allow", object_id=f"{len(ids)} subjects")
    return ids


@router.delete("/gallery/{subject_id}", tags=["gallery"], responses={404: {"description": "not enrolled"}})
def gallery_remove(
    request: Request, subject_id: SubjectId, who: Annotated[Principal, Depends(require(Role.admin, endpoint="gallery.remove"))]
) -> dict:
    """Remove a subject's templates from the gallery file (audited). Consent is left alone: see /api/erasures."""
    s = svc(request)
    n = s.gallery_remove(subject_id)
    s.audit(who, "api.gallery.remove", "allow" if n else "noop", subject_id=subject_id, object_id=f"{n} templates")
    if not n:
        raise HTTPException(404, "subject not enrolled")
    return {"subject_id": subject_id, "templates_removed": n}


# ---------------------------------------------------------------------------------------------- erasure


@router.post("/erasures", tags=["erasure"], status_code=202)
def erasure_request(
    request: Request, body: ErasureIn, who: Annotated[Principal, Depends(require(Role.admin, endpoint="erasure.request"))]
) -> dict:
    """Erase a subject: withdraw every consent, remove gallery templates, delete stored trajectory points here,
    and publish the request to the erasure topic for every other store (audited)."""
    s = svc(request)
    req, templates, points = s.erase(body.subject_id, body.reason)
    s.audit(who, "api.erasure.request", "allow", subject_id=body.subject_id, object_id=req.request_id)
    return {
        "request_id": req.request_id,
        "subject_id": req.subject_id,
        "requested_at": req.requested_at,
        "templates_removed": templates,
        "dashboard_points_removed": points,
    }


@router.get("/erasures", tags=["erasure"], response_model=list[ErasureOut])
def erasure_list(
    request: Request,
    who: Annotated[Principal, Depends(require(Role.admin, Role.auditor, endpoint="erasure.list"))],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict]:
    """Erasure requests, whether they were published, and how long the dashboard took to apply them (audited)."""
    s = svc(request)
    applied = s.view.erasures
    rows = []
    for req, published in s.registry.erasures()[-limit:]:
        st = applied.get(req.request_id)
        rows.append(
            {
                "request_id": req.request_id,
                "subject_id": req.subject_id,
                "requested_at": req.requested_at,
                "reason": req.reason,
                "published_at": published,
                "applied_in_dashboard_s": st.latency_s if st else None,
            }
        )
    s.audit(who, "api.erasure.list", "allow", object_id=f"{len(rows)} requests")
    return rows


# ---------------------------------------------------------------------------------------------- policy


@router.get("/policy", tags=["policy"])
def policy_get(request: Request, who: Annotated[Principal, Depends(require(*ANY, endpoint="policy.read"))]) -> dict:
    """The policy in force (every default filled in) and its version."""
    s = svc(request)
    return {
        "version": s.policy.version,
        "source": s.policy.source,
        "load_error": s.policy_error or None,
        "policy": s.policy.model_dump(mode="json"),
    }


@router.post("/policy/validate", tags=["policy"])
def policy_validate(
    request: Request, body: PolicyText, who: Annotated[Principal, Depends(require(Role.admin, Role.operator, endpoint="policy.validate"))]
) -> dict:
    """Validate a policy file: its version if valid, else every problem with its line and column."""
    try:
        pol = parse_policy(body.text, "<request>")
    except PolicyError as exc:
        return {
            "valid": False,
            "version": None,
            "issues": [{"line": i.line, "column": i.column, "path": i.path, "message": i.message} for i in exc.issues],
        }
    except (RecursionError, MemoryError, ValueError, TypeError) as exc:
        return {
            "valid": False,
            "version": None,
            "issues": [{"line": 0, "column": 0, "path": "", "message": f"unreadable: {type(exc).__name__}"}],
        }
    return {"valid": True, "version": pol.version, "issues": []}


# ---------------------------------------------------------------------------------------------- trajectories


@router.get("/trajectories", tags=["trajectories"])
def trajectory_list(
    request: Request,
    who: Annotated[Principal, Depends(require(Role.admin, Role.operator, endpoint="trajectories.list"))],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[dict]:
    """Subjects with stored trajectory points, newest first (identity data: audited)."""
    s = svc(request)
    s.view.expire()
    rows = []
    for sid, visits in s.view.subjects():
        last = max(visits, key=lambda v: v.captured_at)
        rows.append({"subject_id": sid, "points": len(visits), "last_zone": last.zone, "last_seen": last.captured_at})
    rows.sort(key=lambda r: -r["last_seen"])
    rows = rows[:limit]
    s.audit(who, "api.trajectories.list", "allow", object_id=f"{len(rows)} subjects")
    return rows


@router.get(
    "/trajectories/{subject_id}", tags=["trajectories"], response_model=list[VisitOut], responses={404: {"description": "nothing stored"}}
)
def trajectory_get(
    request: Request,
    subject_id: SubjectId,
    who: Annotated[Principal, Depends(require(Role.admin, Role.operator, endpoint="trajectories.read"))],
) -> list[dict]:
    """One subject's zone visits within retention (identity data: audited)."""
    s = svc(request)
    s.view.expire()
    visits = s.view.trajectory(subject_id)
    s.audit(who, "api.trajectories.read", "allow" if visits else "noop", subject_id=subject_id, object_id=f"{len(visits)} points")
    if not visits:
        raise HTTPException(404, "no trajectory stored for this subject (never matched, expired or erased)")
    return [
        {
            "event_id": v.event_id,
            "captured_at": v.captured_at,
            "zone": v.zone,
            "camera_id": v.camera_id,
            "purpose": v.purpose,
            "prev_zone": v.prev_zone,
            "plausible": v.plausible,
        }
        for v in visits
    ]


@router.get("/state/refs", tags=["audit"])
def state_refs(
    request: Request, who: Annotated[Principal, Depends(require(Role.admin, Role.auditor, endpoint="state.refs"))]
) -> list[dict]:
    """Every subject reference the dashboard holds in memory (trajectory points, recent alerts) with its purpose,
    zone and time, for the leak scanner (``policy.livestores.DashboardStore``); no visit detail (audited)."""
    s = svc(request)
    s.view.expire()
    rows = s.view.refs()
    s.audit(who, "api.state.refs", "allow", object_id=f"{len(rows)} references")
    return rows


# ---------------------------------------------------------------------------------------------- audit


@router.get("/audit", tags=["audit"])
def audit_read(
    request: Request,
    who: Annotated[Principal, Depends(require(Role.admin, Role.auditor, endpoint="audit.read"))],
    chain: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] = "dashboard-api",
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> dict:
    """The last ``limit`` records of one audit chain (reading the audit log is itself audited)."""
    s = svc(request)
    d = audit_dir(s.settings.state_dir)
    path = d / f"{chain}.jsonl"
    s.audit(who, "api.audit.read", "allow", object_id=chain)
    if not path.is_file():
        raise HTTPException(404, f"no audit chain {chain!r}; chains: {sorted(p.stem for p in d.glob('*.jsonl'))}")
    recs = [r for _line, r, _raw in read_records(path) if r is not None]
    return {"chain": chain, "records": len(recs), "tail": [msgspec.to_builtins(r) for r in recs[-limit:]]}


@router.get("/audit/verify", tags=["audit"])
def audit_verify(request: Request, who: Annotated[Principal, Depends(require(Role.admin, Role.auditor, endpoint="audit.verify"))]) -> dict:
    """Verify every audit chain's hashes and sequence (changed, removed, reordered, inserted or torn records) and,
    when the run has a key holder, against its signed checkpoints (a cut tail, a rewritten or deleted chain)."""
    s = svc(request)
    try:
        reports, anchor_problems, anchored = verify_with(audit_dir(s.settings.state_dir), s.keys)
    except KeyUnavailable as exc:
        raise HTTPException(503, f"the key holder holds the audit checkpoints and did not answer: {exc}") from None
    s.audit(who, "api.audit.verify", "allow", object_id=f"{len(reports)} chains")
    return {
        "ok": all(r.ok for r in reports) and not anchor_problems,
        "anchored": anchored,
        "anchor_problems": [str(p) for p in anchor_problems],
        "chains": [
            {
                "chain": r.path.stem,
                "records": r.records,
                "head_seq": r.head[0],
                "head_hash": r.head[1],
                "problems": [str(p) for p in r.problems],
            }
            for r in reports
        ],
    }
