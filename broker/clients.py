"""Producer and consumer factories. Every setting comes from configuration: the embedded broker needs
shorter session and fetch waits than a real Kafka cluster (``core.config.ClientTuning``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from core.config import Settings


class BrokerUnreachable(RuntimeError):
    """No Kafka-protocol broker answered at the configured bootstrap address."""


def bootstrap_of(settings: Settings) -> str:
    if not settings.broker.bootstrap:
        raise BrokerUnreachable(
            "no broker address: set broker.bootstrap (or PAXSIM__BROKER__BOOTSTRAP=host:port), "
            "or run `paxsim broker` / `paxsim demo`, which start the embedded broker"
        )
    return settings.broker.bootstrap


def security_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for ``broker.security`` (empty for PLAINTEXT). Shared by producers,
    consumers and admin clients."""
    sec = settings.broker.security
    if sec.protocol == "PLAINTEXT":
        return {}
    kwargs: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        kwargs["ssl_context"] = create_ssl_context(cafile=str(sec.ca_file) if sec.ca_file else None)
    if sec.protocol.startswith("SASL_"):
        try:
            password = Path(sec.password_file).read_text().strip()  # type: ignore[arg-type]
        except OSError as exc:
            raise BrokerUnreachable(f"cannot read broker.security.password_file {sec.password_file}: {exc}") from None
        kwargs.update(sasl_mechanism=sec.sasl_mechanism, sasl_plain_username=sec.username, sasl_plain_password=password)
    return kwargs


async def connect(client: Any, bootstrap: str, timeout_s: float, what: str) -> None:
    """``await client.start()`` with a deadline and an error that says where it tried to connect."""
    try:
        await asyncio.wait_for(client.start(), timeout=timeout_s)
    except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as exc:
        try:
            await client.close() if hasattr(client, "close") else await client.stop()
        except Exception:
            pass
        raise BrokerUnreachable(
            f"{what}: cannot reach a Kafka broker at {bootstrap} within {timeout_s:.0f}s ({type(exc).__name__}: {exc}). "
            "Is it running? Check broker.bootstrap / PAXSIM__BROKER__BOOTSTRAP."
        ) from None


async def start_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A started producer: acks=all, lz4-free (no extra codec needed), bounded linger."""
    tuning = settings.broker.client_tuning()
    bootstrap = bootstrap_of(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=tuning.linger_ms,
        request_timeout_ms=tuning.request_timeout_ms,
        max_request_size=tuning.max_message_bytes,
        **security_kwargs(settings),
        **overrides,
    )
    await connect(producer, bootstrap, settings.broker.connect_timeout_s, "producer")
    return producer


async def start_consumer(
    settings: Settings, *topics: str, group_id: str | None, background: bool = False, **overrides: Any
) -> AIOKafkaConsumer:
    """A started consumer with manual commits (callers commit after their output is acknowledged).

    ``background``: a consumer off the data path (dashboard, erasure listener) waits longer per fetch
    (``ClientTuning.background_fetch_max_wait_ms``): less idle polling, more delivery latency."""
    tuning = settings.broker.client_tuning()
    bootstrap = bootstrap_of(settings)
    kwargs: dict[str, Any] = dict(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=tuning.session_timeout_ms,
        heartbeat_interval_ms=tuning.heartbeat_interval_ms,
        fetch_max_wait_ms=tuning.background_fetch_max_wait_ms if background else tuning.fetch_max_wait_ms,
        request_timeout_ms=max(tuning.request_timeout_ms, tuning.session_timeout_ms + 1000),
        max_partition_fetch_bytes=tuning.max_message_bytes,
    )
    kwargs.update(security_kwargs(settings))
    kwargs.update(overrides)
    consumer = AIOKafkaConsumer(*topics, **kwargs)
    await connect(consumer, bootstrap, settings.broker.connect_timeout_s, f"consumer {group_id or ''}".strip())
    return consumer
