"""Ports handed to child processes come from outside the kernel's ephemeral range, so that no outgoing
connection or port-0 bind elsewhere on the host can take one before the child listens on it."""

from __future__ import annotations

import socket

from core.obs import _below_ephemeral, free_port, port_free


def test_free_ports_are_bindable_and_never_ones_the_kernel_hands_out():
    lo, hi = _below_ephemeral()
    with socket.socket() as s:  # what the kernel hands out: its ephemeral range
        s.bind(("127.0.0.1", 0))
        assert s.getsockname()[1] > hi
    ports = {free_port() for _ in range(20)}
    assert all(lo <= p <= hi and port_free("127.0.0.1", p) for p in ports)
    assert len(ports) > 1  # picked at random: parallel callers rarely meet
