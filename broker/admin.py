"""Topic administration: create the catalogue's topics explicitly, before any producer starts."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from broker import topics as t
from broker.clients import connect, security_kwargs
from core.config import Settings

log = logging.getLogger("paxsim.broker")


async def ensure_topics(settings: Settings, bootstrap: str | None, retention: t.PolicyRetention | None) -> list[str]:
    """Create every catalogue topic that does not exist yet. Returns the names it created.

    ``retention``: the policy's lifetimes for the biometric topics (``Policy.topic_retention()``); None leaves
    their retention.ms to the broker's default, which only suits a broker that ignores it (Tansu)."""
    bootstrap = bootstrap or settings.broker.bootstrap
    if not bootstrap:
        raise ValueError("no broker address: pass one or set broker.bootstrap")
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=settings.broker.client_tuning().request_timeout_ms, **security_kwargs(settings)
    )
    await connect(admin, bootstrap, settings.broker.connect_timeout_s, what="admin client")
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=topic.name,
                num_partitions=settings.broker.partitions,
                replication_factor=settings.broker.replication_factor,
                topic_configs=t.topic_configs(topic, settings, retention),
            )
            for topic in t.ALL
            if topic.name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process won the race
            log.info("created topics", extra={"topics": [n.name for n in missing]})
        return [n.name for n in missing]
    finally:
        await admin.close()
