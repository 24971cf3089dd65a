"""The Faust application object, its topics and its table, built from the settings.

``build_app`` makes them and nothing more; ``streams.worker`` (the
composition root) attaches the unit of work, timers and views. Nothing here runs
at import.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TableT

import state.store
from state.envelope import OutputKind
from streams.kafka_security import faust_credentials
from streams.outbox import CustomerContributions, CustomerOutbox
from streams.settings import Settings


def _make_app(conf: Settings) -> faust.App:
    conf.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    return faust.App(
        conf.app_id,
        broker=conf.broker,
        # SASL / TLS of Faust's own consumer and producer (streams.kafka_security).
        broker_credentials=faust_credentials(conf),
        # Every table lives in Redis (state.store): restarts resume without replay.
        store=conf.redis_url,
        topic_partitions=conf.partitions,
        topic_replication_factor=conf.replication_factor,
        web_host=conf.web_host,
        web_bind=conf.web_host,
        web_port=conf.web_port,
        web_in_thread=False,
        # Faust's local files (leader election, table metadata): out of the cwd.
        datadir=str(conf.data_dir / conf.app_id),
        # Faust's own Prometheus sensor is not used: we expose our own metrics.
        autodiscover=False,
        # Batch produced records instead of one request per event.
        producer_linger=0.005,
        # Faust's consumer reads only the changelog (table recovery): large polls.
        broker_max_poll_records=2000,
        producer_max_request_size=max(conf.max_message_bytes * 4, 1_048_576),
        # Our state is already at-least-once safe (idempotent by event_id).
        processing_guarantee="at_least_once",
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
    )


@dataclass(frozen=True)
class Topics:
    """Every topic the service reads or writes (docs/input-events.md, docs/output-events.md).

    All use raw bytes: inputs must be kept byte-exact for the dead-letter
    topic, and outputs are encoded by our own models (money as strings).
    """

    purchases: faust.TopicT
    cancellations: faust.TopicT
    feedback: faust.TopicT
    updates: faust.TopicT
    churn: faust.TopicT
    dead_letter: faust.TopicT
    #: Compacted: every update again, so the newest per customer stays readable.
    latest_updates: faust.TopicT
    #: Internal: due customers from the inactivity timer (streams.inactivity).
    inactivity: faust.TopicT

    def output_names(self) -> dict[OutputKind, tuple[str, ...]]:
        """The names of the topics each kind of processor output is published to."""
        outputs: dict[OutputKind, tuple[faust.TopicT, ...]] = {
            "update": (self.updates, self.latest_updates),
            "churn": (self.churn,),
            "dead_letter": (self.dead_letter,),
        }
        return {kind: tuple(t.get_topic_name() for t in ts) for kind, ts in outputs.items()}


@dataclass(frozen=True)
class ServiceApp:
    """The app with what the unit of work, timers and views of a worker work on."""

    settings: Settings
    app: faust.App
    topics: Topics
    #: Per-customer state, keyed by customer_id bytes; values are
    #: ``state.envelope`` bytes (encoded state, owed outputs), opaque to Faust.
    customers: TableT  # type: ignore[type-arg]

    def customer_store(self) -> state.store.RedisStore:
        """The Redis store behind ``customers`` (prefetch, seal, health)."""
        store = self.customers.data
        assert isinstance(store, state.store.RedisStore), store
        return store


def build_app(settings: Settings) -> ServiceApp:
    """The Faust app, its topics and the ``customers`` table of ``settings``."""
    state.store.register()
    app = _make_app(settings)

    def topic(name: str) -> faust.TopicT:
        return app.topic(
            name,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            allow_empty=True,
        )

    topics = Topics(
        purchases=topic(settings.topic_purchases),
        cancellations=topic(settings.topic_cancellations),
        feedback=topic(settings.topic_feedback),
        updates=topic(settings.topic_updates),
        churn=topic(settings.topic_churn),
        dead_letter=topic(settings.topic_dead_letter),
        latest_updates=topic(settings.topic_customers),
        inactivity=topic(settings.topic_inactivity),
    )
    customers = app.Table(
        "customers",
        default=None,
        partitions=settings.partitions,
        # bytes types select the raw codec for the store and the changelog.
        key_type=bytes,
        value_type=bytes,
        # The inactivity schedule has no changelog: a customer recovered from the
        # changelog is looked at again at once, which files its next check.
        # Values carry the outputs they owe: recovery resends them (streams.outbox),
        # and what they add to the partition's insights sums (state.store.sums).
        # The unit of work seals a batch's writes once its records are
        # acknowledged (streams.unit_of_work): nothing else is flushed.
        options={
            "schedule_recovered": True,
            "outbox": CustomerOutbox(app, topics.output_names()),
            "contributions": CustomerContributions() if settings.insights else None,
            "explicit_seal": True,
        },
    )
    return ServiceApp(settings, app, topics, customers)
