#!/usr/bin/env bash
# The key holder's credentials for docker-compose.yml, one file per role in deploy/secrets/keyd/ (git-ignored):
#   admin                                 enrolment and tools (audit scan)
#   edge, gate, matcher, dashboard, auditor  each stage's own, allowing only what that stage needs (policy/keyd.py)
# Compose mounts each service's file as the secret keyd_token, so no token is in a container's environment;
# preflight refuses missing, short or shared ones. Re-run with --force to replace them (then restart the stack).
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)/secrets/keyd"
if [[ -e "$out/admin" && "${1-}" != "--force" ]]; then
    echo "$out/admin exists; use --force to replace the key holder's credentials" >&2
    exit 1
fi
mkdir -p "$out"
for role in admin edge gate matcher dashboard auditor; do
    # 32 random bytes, base64url without padding: 43 characters
    openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n' > "$out/$role"
done
# paxsim runs as uid 10001 in its containers and reads these bind-mounted files
chmod 755 "$out"
chmod 644 "$out"/*
echo "key holder credentials written to $out"
