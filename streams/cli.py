"""The ``ltv`` console script: worker, demo feed and the operator commands."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from state.store.config import mask_url
from streams.settings import Settings, SettingsError, load_settings


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"ltv: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


class _LastKafkaError(logging.Handler):
    """Keeps the last error aiokafka logs instead of printing it.

    aiokafka logs why it could not connect (refused, SASL authentication
    failed, TLS handshake ...) and then raises only "Unable to bootstrap
    from ...": the logged reason is the one worth the operator's one line.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()


@contextmanager
def _kafka_errors_kept() -> Iterator[_LastKafkaError]:
    """While the block runs, aiokafka's errors are kept by the handler yielded, not printed."""
    logger = logging.getLogger("aiokafka")
    handler = _LastKafkaError()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def _cmd_worker(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from streams.admin import TopicLayoutError, ensure_topics

    settings = _settings_or_exit()
    with _kafka_errors_kept() as kafka_error:
        try:
            # Before subscribing: a consumer's metadata request would otherwise make
            # the broker auto-create missing input topics with its default layout.
            # It is also the first connection: bad credentials end the worker here.
            asyncio.run(ensure_topics(settings))
        except TopicLayoutError as exc:
            print(f"ltv: {exc}", file=sys.stderr)
            return 2
        except ssl.SSLError as exc:
            print(f"ltv: cannot load the LTV_KAFKA_SSL_* files: {exc}", file=sys.stderr)
            return 2
        except KafkaError as exc:
            print(
                f"ltv: cannot use Kafka at {settings.bootstrap_servers} "
                f"(LTV_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}): "
                f"{kafka_error.message or exc}",
                file=sys.stderr,
            )
            return 2
    if settings.event_loop == "uvloop":
        if importlib.util.find_spec("uvloop") is None:
            print(
                "ltv: LTV_EVENT_LOOP=uvloop needs the uvloop package (pip install uvloop)",
                file=sys.stderr,
            )
            return 2
        import mode.loop

        mode.loop.use("uvloop")  # before anything creates a loop
    from streams.worker import build_worker

    app = build_worker(settings)
    store = mask_url(settings.redis_url)
    quiet = []
    if store != settings.redis_url:
        # Faust's start-up banner prints the store URL as given, password included.
        quiet = ["--quiet"]
        print(f"ltv worker {settings.app_id}: broker {settings.broker}, store {store}")
    sys.argv = ["ltv", *quiet, "worker", "--loglevel", args.loglevel]
    app.main()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from streams.demo import DemoFeed, default_start
    from streams.publisher import publish

    settings = _settings_or_exit()
    span = args.span_days
    start = datetime.fromisoformat(args.start) if args.start else default_start(span_days=span)
    feed = DemoFeed(args.customers, args.seed, start, span_days=span)
    live_from = start + timedelta(days=args.history_days)

    def report(sent: int) -> None:
        if sent % max(1, int(args.rate or 1000) * 10) == 0:
            print(f"ltv demo: {sent} events sent", flush=True)

    sent = asyncio.run(
        publish(
            feed,
            settings,
            rate=args.rate,
            limit=args.count,
            on_sent=report,
            live=lambda event: event.occurred_at >= live_from,
        )
    )
    print(
        f"ltv demo: done, {sent} events sent to {settings.topic_purchases} and "
        f"{settings.topic_cancellations}"
    )
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from streams.watch import run_watch

    settings = _settings_or_exit()
    topic = args.topic or settings.topic_updates
    seen = run_watch(
        settings,
        topic,
        from_beginning=args.from_beginning,
        count=args.count,
        timeout=args.timeout,
    )
    return 0 if args.count is None or seen >= args.count else 1


def _cmd_backfill(args: argparse.Namespace) -> int:
    from pathlib import Path

    from streams.backfill import backfill, detect_format
    from streams.order_lines import LineFormat, parse_column_map, zone

    settings = _settings_or_exit()
    path = Path(args.file)
    line_options = {
        "--columns": args.columns,
        "--time-format": args.time_format,
        "--timezone": args.timezone,
        "--return-prefix": args.return_prefix,
    }
    try:
        fmt = args.format or detect_format(path)
        given = [flag for flag, value in line_options.items() if value is not None]
        if fmt != "lines" and given:
            raise ValueError(f"{', '.join(given)} only apply to --format lines")
        line_format = LineFormat(
            columns=parse_column_map(args.columns or ""),
            time_format=args.time_format,
            timezone=zone(args.timezone) if args.timezone else None,
            return_prefix=args.return_prefix or "",
            currency=settings.base_currency,
        )
        report = asyncio.run(backfill(path, fmt, settings, rate=args.rate, line_format=line_format))
    except (OSError, ValueError) as exc:
        print(f"ltv backfill: {exc}", file=sys.stderr)
        return 2
    anonymous = (
        f"; {report.no_customer} rows without a customer id not sent" if fmt == "lines" else ""
    )
    print(
        f"ltv backfill: {report.sent} events sent to {settings.topic_purchases} and "
        f"{settings.topic_cancellations}; {report.bad} bad lines not sent{anonymous}"
    )
    return 1 if report.bad else 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from streams.fit import fit_command

    return asyncio.run(fit_command(_settings_or_exit(), args.as_of, wait=args.wait))


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from streams.evaluate import evaluate_command

    settings = _settings_or_exit()
    return asyncio.run(evaluate_command(settings, args.as_of, args.holdout_days, Path(args.out)))


def _cmd_drop(args: argparse.Namespace) -> int:
    """Delete the deployment LTV_APP_ID: its topics and its Redis state."""
    from state.store.config import StoreConfig
    from streams.admin import drop_deployment

    settings = _settings_or_exit()
    if not args.yes:
        print(
            f"ltv drop: would delete the topics and Redis state of {settings.app_id!r}; "
            "run again with --yes",
            file=sys.stderr,
        )
        return 2

    async def drop() -> tuple[list[str], int]:
        client = StoreConfig.from_url(settings.redis_url).async_client()
        try:
            return await drop_deployment(settings, client)
        finally:
            await client.aclose()

    topics, keys = asyncio.run(drop())
    print(f"ltv drop: {settings.app_id}: {len(topics)} topics and {keys} Redis keys deleted")
    return 0


def _cmd_insights(args: argparse.Namespace) -> int:
    """Print the deployment's live group figures, read from Redis (no worker needed)."""
    import redis.exceptions

    from state.store.config import StoreConfig
    from streams.fit import parse_as_of
    from streams.insights_api import current_insights
    from streams.insights_table import render

    settings = _settings_or_exit()
    if not settings.insights:
        print(
            "ltv insights: LTV_INSIGHTS is off: this deployment keeps no group sums",
            file=sys.stderr,
        )
        return 2
    try:
        clock = parse_as_of(args.as_of)
    except ValueError as exc:
        print(f"ltv insights: {exc}", file=sys.stderr)
        return 2

    async def read() -> bytes | str:
        client = StoreConfig.from_url(settings.redis_url).async_client()
        try:
            figures = await current_insights(client, settings, clock)
        finally:
            await client.aclose()
        return figures.to_json() if args.json else render(figures)

    try:
        out = asyncio.run(read())
    except (redis.exceptions.RedisError, OSError) as exc:
        print(f"ltv insights: Redis unavailable: {exc}", file=sys.stderr)
        return 1
    print(out.decode() if isinstance(out, bytes) else out)
    return 0


def _cmd_customer(args: argparse.Namespace) -> int:
    """Ask a worker for one customer's current valuation (GET /customers/{id})."""
    import urllib.error
    import urllib.parse
    import urllib.request

    settings = _settings_or_exit()
    base = args.url or f"http://{settings.web_host}:{settings.web_port}"
    url = f"{base}/customers/{urllib.parse.quote(args.customer_id, safe='')}"
    headers = {}
    if settings.api_token:
        headers["Authorization"] = f"Bearer {settings.api_token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            print(r.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(f"ltv customer: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ltv customer: no worker answers at {base}: {exc}", file=sys.stderr)
        return 1


def _cmd_schema(args: argparse.Namespace) -> int:
    """Write the events' JSON Schema files, or with --check only report stale ones."""
    from pathlib import Path

    from streams.schemas import SCHEMA_DIR, generate, stale, write

    directory = Path(args.dir) if args.dir else SCHEMA_DIR
    generated = generate()
    if args.check:
        outdated = stale(directory, generated)
        for name in outdated:
            print(f"ltv schema: {directory / name} is missing or stale", file=sys.stderr)
        if outdated:
            print("ltv schema: run `ltv schema` and commit the result", file=sys.stderr)
        return 1 if outdated else 0
    changed = write(directory, generated)
    print(f"ltv schema: {len(changed)} of {len(generated)} files written to {directory}")
    return 0


#: Benchmarks runnable as ``ltv bench NAME`` (bench/NAME.py, in a source checkout).
BENCHMARKS = ("throughput", "latency", "recovery", "memory", "arrival_order")


def _cmd_bench(args: argparse.Namespace) -> int:
    """Run bench/NAME.py as a script: benchmarks live in the checkout, not the package."""
    import runpy
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "bench"
    script = folder / f"{args.name}.py"
    if not script.is_file():
        print(f"ltv bench: {script} not found (benchmarks need a source checkout)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(folder))
    sys.argv = [str(script), *args.args]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ltv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run a stream-processing worker")
    worker.add_argument(
        "-l", "--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"]
    )
    worker.set_defaults(func=_cmd_worker)

    demo = sub.add_parser("demo", help="publish a synthetic order feed")
    demo.add_argument("--rate", type=float, default=50.0, help="events per second (0: unpaced)")
    demo.add_argument("--customers", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--count", type=int, default=None, help="stop after this many events")
    demo.add_argument(
        "--start",
        default=None,
        help="event time of day 0 (ISO 8601 with offset; default: --span-days before today)",
    )
    demo.add_argument(
        "--span-days",
        type=float,
        default=365.0,
        help="days over which the shop's customers arrive (default 365)",
    )
    demo.add_argument(
        "--history-days",
        type=float,
        default=0.0,
        help="send the first DAYS of event time unpaced (the shop's history), then pace at --rate",
    )
    demo.set_defaults(func=_cmd_demo)

    watch = sub.add_parser("watch", help="print the records of an output topic as they arrive")
    watch.add_argument("topic", nargs="?", default=None, help="default: LTV_TOPIC_UPDATES")
    watch.add_argument("--from-beginning", action="store_true")
    watch.add_argument("--count", type=int, default=None, help="exit after this many records")
    watch.add_argument("--timeout", type=float, default=None, help="exit after this many seconds")
    watch.set_defaults(func=_cmd_watch)

    backfill = sub.add_parser(
        "backfill",
        help="publish historic orders from a CSV, JSONL or order-line file "
        "(exit 1 if lines were refused)",
    )
    backfill.add_argument("file", help="may be gzip-compressed (.gz)")
    backfill.add_argument(
        "--format",
        choices=["csv", "jsonl", "lines"],
        default=None,
        help="default: from the file name (.csv, .jsonl, .ndjson); lines: one row per "
        "order line, returns as negative quantities (README, Backfill)",
    )
    backfill.add_argument(
        "--rate", type=float, default=None, help="events per second (default: unpaced)"
    )
    backfill.add_argument(
        "--columns",
        default=None,
        help="lines: FIELD=COLUMN,... for the fields order, customer, time, sku, quantity, "
        "price, currency, category (default: order_id, customer_id, occurred_at or time, "
        "sku, quantity, unit_price, currency, category)",
    )
    backfill.add_argument(
        "--time-format",
        default=None,
        help="lines: strptime format of the time column (default: RFC 3339 / ISO 8601)",
    )
    backfill.add_argument(
        "--timezone",
        default=None,
        help="lines: IANA zone of times without an offset (required for them)",
    )
    backfill.add_argument(
        "--return-prefix",
        default=None,
        help="lines: order ids starting with this are returns (default: none; "
        "negative quantities always are)",
    )
    backfill.set_defaults(func=_cmd_backfill)

    fit = sub.add_parser("fit", help="fit the model on every customer's state now and store it")
    fit.add_argument(
        "--as-of", default=None, help="clock of the fit: YYYY-MM-DD or RFC 3339 (default: now)"
    )
    fit.add_argument(
        "--wait", type=float, default=120.0, help="seconds to wait while another fit holds the lock"
    )
    fit.set_defaults(func=_cmd_fit)

    evaluate = sub.add_parser(
        "evaluate",
        help="score every orders model on a holdout of the stored history, as the fit "
        "chooses; print the tables and write PNG figures (stores nothing)",
    )
    evaluate.add_argument(
        "--as-of", default=None, help="end of the holdout: YYYY-MM-DD or RFC 3339 (default: now)"
    )
    evaluate.add_argument(
        "--holdout-days",
        type=int,
        default=None,
        help="days held out before --as-of (default: LTV_FIT_HOLDOUT_DAYS)",
    )
    evaluate.add_argument(
        "--out", default="var/evaluate", help="directory of the PNGs (default: var/evaluate)"
    )
    evaluate.set_defaults(func=_cmd_evaluate)

    drop = sub.add_parser(
        "drop",
        help="delete the topics and Redis state of the deployment LTV_APP_ID (a demo's)",
    )
    drop.add_argument("--yes", action="store_true", help="really delete")
    drop.set_defaults(func=_cmd_drop)

    insights = sub.add_parser(
        "insights",
        help="print LTV:CAC by channel, cohorts, NRR, breadth, NPS and churn (docs/insights.md)",
    )
    insights.add_argument(
        "--as-of", default=None, help="read clock: YYYY-MM-DD or RFC 3339 (default: now)"
    )
    insights.add_argument(
        "--json", action="store_true", help="print the GET /insights JSON instead of tables"
    )
    insights.set_defaults(func=_cmd_insights)

    customer = sub.add_parser("customer", help="print a customer's current ltv.updates body")
    customer.add_argument("customer_id")
    customer.add_argument("--url", default=None, help="a worker's base URL (default: LTV_WEB_*)")
    customer.set_defaults(func=_cmd_customer)

    schema = sub.add_parser(
        "schema", help="write the JSON Schema of every input and output event (docs/schemas)"
    )
    schema.add_argument("--dir", default=None, help="default: docs/schemas")
    schema.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing the files that are missing or differ",
    )
    schema.set_defaults(func=_cmd_schema)

    bench = sub.add_parser(
        "bench",
        help="run a benchmark against the local Kafka and Redis (prints a table; --json PATH)",
    )
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("args", nargs=argparse.REMAINDER, help="options of the benchmark")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
