"""The video edge agent on the real embedded broker: a biometric-zone camera publishes Sightings with
embeddings, a count-only camera publishes ZoneCounts and no embedding, a broken camera stops alone."""

from __future__ import annotations

import asyncio

import cv2

from broker import topics as t
from broker.messages import Sighting, ZoneCount, decode
from broker.reader import read_all
from core.config import Settings
from edge.camera import CameraConfig
from edge.service import run_video_edge
from tests.edge.faces import walk_clip


def write_walk_video(path, frames: int):
    """:func:`walk_clip` as an mp4 file at 10 fps."""
    clip, _ = walk_clip(frames)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (clip[0].shape[1], clip[0].shape[0]))
    for f in clip:
        w.write(f)
    w.release()
    return path


def test_video_edge_publishes_sightings_and_counts_only(tmp_path, client_settings: Settings, key_holder):
    video = write_walk_video(tmp_path / "walk.mp4", 10)
    cams = [
        CameraConfig(camera_id="v-security", zone="security", source=str(video)),
        CameraConfig(camera_id="v-concourse", zone="concourse", source=str(video)),
        CameraConfig(camera_id="v-broken", zone="security", source=str(tmp_path / "missing.mp4")),
    ]
    offered = asyncio.run(run_video_edge(client_settings, asyncio.Event(), cams, duration_s=60, workers=2))
    sightings = [decode(r.value, Sighting) for r in asyncio.run(read_all(client_settings, t.SIGHTINGS.name))]
    counts = [decode(r.value, ZoneCount) for r in asyncio.run(read_all(client_settings, t.ZONE_COUNTS.name))]
    assert offered == len(sightings) >= 2
    assert {s.camera_id for s in sightings} == {"v-security"}
    for s in sightings:  # a plain float32 embedding, or one sealed under an epoch key (never both)
        assert s.zone == "security" and s.box[2] > 0 and 0 < s.quality <= 1
        assert (len(s.embedding) == 512 and not s.sealed) or (s.sealed and s.key_id and not s.embedding)
    assert len({s.track_id for s in sightings}) == 2
    assert all(c.camera_id == "v-concourse" for c in counts)
    assert sum(c.faces for c in counts) == 2  # two people newly seen, published as a count only


def _metric(name: str, camera: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, {"camera": camera}) or 0.0


def test_video_edge_hot_reloads_the_policy(tmp_path, client_settings: Settings, key_holder):
    """A policy change reaches a running video edge: once the file says the zone is not biometric, the edge
    chain withholds that camera's sightings (the edge reloads the file itself, as every stage does)."""
    from prometheus_client import REGISTRY

    from policy.policyfile import DEFAULT_POLICY_PATH, parse_policy

    video = write_walk_video(tmp_path / "walk.mp4", 12)
    policy = tmp_path / "policy.yaml"
    text = DEFAULT_POLICY_PATH.read_text()
    policy.write_text(text)
    s = client_settings.model_copy(update={"policy": client_settings.policy.model_copy(update={"file": policy})})
    cam = "v-hot-reload"  # a camera id of its own: the metrics are process-wide
    cams = [CameraConfig(camera_id=cam, zone="security", source=str(video), loop=True, realtime=True)]

    async def wait_for(cond, timeout_s: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not cond():
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    def in_force(version: str) -> bool:  # paxsim_policy_loaded_info: the version a policy holder of this process holds
        return REGISTRY.get_sample_value("paxsim_policy_loaded_info", {"version": version}) == 1

    async def main() -> None:
        stop = asyncio.Event()
        edge = asyncio.create_task(run_video_edge(s, stop, cams, duration_s=90, workers=1))
        try:
            await wait_for(lambda: _metric("paxsim_edge_sightings_total", cam) >= 1, 60, "a first sighting")
            assert _metric("paxsim_edge_observations_filtered_total", cam) == 0
            new = text.replace("security:    {biometric: true, purpose: flow-analytics}", "security:    {biometric: false}")
            assert new != text
            version = parse_policy(new, "new").version  # a version no other test loads
            assert not in_force(version)
            tmp = policy.with_suffix(".tmp")
            tmp.write_text(new)
            tmp.replace(policy)
            await wait_for(lambda: in_force(version), 10, "the edge to reload the policy")
            await wait_for(
                lambda: _metric("paxsim_edge_observations_filtered_total", cam) >= 1, 60, "the new policy to withhold a sighting"
            )
        finally:
            stop.set()
            await edge

    asyncio.run(main())
