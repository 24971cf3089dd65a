"""The JSON Schema files of docs/schemas: current, and true to what the code does.

Current: the checked-in files are what ``streams.schemas.generate`` gives, so a
model change without ``ltv schema`` fails here. True: records the real code
renders validate against them, inputs the decoder accepts validate, and
inputs it refuses are refused where JSON Schema can state the rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from processor_fixtures import TOPICS
from schema_check import SCHEMA_DIR, assert_valid, validator
from test_events import CANCELLATION, PURCHASE

from ltv.gammagamma import GammaGammaParams
from ltv.mbgnbd import MBGNBDParams
from ltv.rfm import RfmEdges
from ltv.valuation import ModelSnapshot, ValuationConfig
from state.customer import StateConfig
from state.envelope import Output
from state.events import EventError, InputKind, decode_event
from state.fx import load_fx_table
from streams.cli import main
from streams.demo import DemoFeed
from streams.processing import EventType, Processor, Record
from streams.schemas import EVENTS, EventKind, generate, render, stale

FX = load_fx_table(None, "USD")
START = datetime(2025, 1, 1, tzinfo=UTC)
MODEL = ModelSnapshot(
    version="v1",
    orders=MBGNBDParams(r=0.5, alpha=30.0, a=0.6, b=2.5),
    spend=GammaGammaParams(p=6.25, q=3.74, gamma=15.44),
    rfm=RfmEdges((10, 30, 90, 180), (0, 1, 2, 4), (50, 100, 200, 400)),
    subscription_monthly_churn=0.1,
)
FEEDBACK: dict[str, Any] = {
    "event_id": "f-1",
    "customer_id": "c-42",
    "occurred_at": "2026-11-22T08:30:00+01:00",
    "score": 9,
    "comment": "Fast delivery.",
}


# ----------------------------------------------------------------- the files are current


def test_checked_in_files_are_what_the_models_generate() -> None:
    generated = generate()
    assert sorted(generated) == sorted(e.filename for e in EVENTS)
    assert stale(SCHEMA_DIR, generated) == [], "docs/schemas is stale: run `ltv schema`"


def test_generation_is_deterministic_sorted_and_newline_terminated() -> None:
    first, second = generate(), generate()
    assert first == second
    for body in first.values():
        assert body.endswith(b"}\n") and render(json.loads(body)) == body


def test_ltv_schema_check_writes_nothing_and_reports_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "schemas"
    assert main(["schema", "--dir", str(target), "--check"]) == 1
    assert not target.exists()
    assert "purchase.schema.json is missing or stale" in capsys.readouterr().err
    assert main(["schema", "--dir", str(target)]) == 0
    assert {p.name for p in target.iterdir()} == set(generate())
    assert main(["schema", "--dir", str(target), "--check"]) == 0
    (target / "dead-letter.schema.json").write_text("{}\n")
    assert main(["schema", "--dir", str(target), "--check"]) == 1
    err = capsys.readouterr().err
    assert "dead-letter.schema.json" in err and "purchase.schema.json" not in err


# ------------------------------------------------------------------------------ inputs


def demo_events(customers: int = 80, seed: int = 3) -> list[tuple[EventType, bytes, bytes]]:
    """A year of the demo shop: (kind, key, value) in event-time order."""
    return [
        (ev.kind, ev.key.encode(), orjson.dumps(ev.value))
        for ev in DemoFeed(customers, seed, START)
    ]


def test_demo_events_are_valid_inputs() -> None:
    kinds = set()
    for kind, _, value in demo_events():
        assert_valid(kind, value)
        kinds.add(kind)
    assert kinds == {"purchase", "cancellation", "feedback"}


#: The JSON examples of each docs page, in the order they appear there.
EXAMPLES: dict[str, list[EventKind]] = {
    "input-events.md": ["purchase", "cancellation", "feedback"],
    "output-events.md": ["update", "churn", "dead_letter"],
}


@pytest.mark.parametrize("page", sorted(EXAMPLES))
def test_the_examples_of_the_docs_match_the_schemas(page: str) -> None:
    text = (SCHEMA_DIR.parent / page).read_text()
    blocks = re.findall(r"^```json\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)
    assert len(blocks) == len(EXAMPLES[page]), page
    for kind, block in zip(EXAMPLES[page], blocks, strict=True):
        assert_valid(kind, block.encode())


def schema_accepts(kind: EventType, doc: Any) -> bool:
    return validator(kind).is_valid(doc)  # type: ignore[arg-type]


def decoder_accepts(kind: InputKind, doc: Any) -> bool:
    try:
        decode_event(kind, orjson.dumps(doc), fx=FX)
    except EventError:
        return False
    return True


REFUSED: list[tuple[str, dict[str, Any]]] = [
    ("no offset", {"occurred_at": "2026-11-20T10:15:00"}),
    ("a date only", {"occurred_at": "2026-11-20"}),
    ("a number for a time", {"occurred_at": 1763630100}),
    ("negative amount", {"amount": "-1.00"}),
    ("exponent string", {"amount": "1e3"}),
    ("signed string", {"amount": "+5"}),
    ("seven decimals", {"amount": "0.0000001"}),
    ("too big", {"amount": "1000000000000"}),
    ("too big as a number", {"amount": 1e12}),
    ("true for an amount", {"amount": True}),
    ("null amount", {"amount": None}),
    ("lower-case currency", {"currency": "sek"}),
    ("empty id", {"event_id": ""}),
    ("long id", {"order_id": "o" * 129}),
    ("newline in id", {"customer_id": "c\n42"}),
    ("no-break space in id", {"customer_id": "c\u00a042"}),
    ("number for an id", {"event_id": 17}),
    ("margin above 1", {"margin_rate": 1.5}),
    ("margin string above 1", {"margin_rate": "1.01"}),
    ("quantity below 0", {"items": [{"sku": "A1", "quantity": -1}]}),
    ("item without sku", {"items": [{"quantity": 1}]}),
    ("unknown interval", {"subscription": {"plan_id": "pro", "interval": "fortnight"}}),
    ("missing event_id", {"event_id": ...}),
]


@pytest.mark.parametrize(("why", "change"), REFUSED, ids=[w for w, _ in REFUSED])
def test_purchases_the_decoder_refuses_the_schema_refuses(why: str, change: dict[str, Any]) -> None:
    doc = {k: v for k, v in {**PURCHASE, **change}.items() if v is not ...}
    assert not decoder_accepts("purchase", doc)
    assert not schema_accepts("purchase", doc)


@pytest.mark.parametrize(
    "change",
    [{"scope": "partial"}, {"amount": "-5"}, {"reason": "x" * 257}, {"currency": "usd"}],
)
def test_cancellations_the_decoder_refuses_the_schema_refuses(change: dict[str, Any]) -> None:
    doc = {**CANCELLATION, **change}
    assert not decoder_accepts("cancellation", doc)
    assert not schema_accepts("cancellation", doc)


@pytest.mark.parametrize(
    "change",
    [
        {"score": -1},
        {"score": 11},
        {"score": True},
        {"score": 9.5},
        {"score": "9"},
        {"score": None},
        {"comment": "x" * 1001},
        {"comment": 5},
        {"customer_id": ""},
    ],
)
def test_feedback_the_decoder_refuses_the_schema_refuses(change: dict[str, Any]) -> None:
    doc = {**FEEDBACK, **change}
    assert not decoder_accepts("feedback", doc)
    assert not schema_accepts("feedback", doc)


@pytest.mark.parametrize(
    "change", [{"score": 0}, {"score": 10}, {"comment": None}, {"unknown_field": 1}]
)
def test_feedback_the_decoder_accepts_the_schema_accepts(change: dict[str, Any]) -> None:
    doc = {**FEEDBACK, **change}
    assert decoder_accepts("feedback", doc)
    assert schema_accepts("feedback", doc)


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 12},
        {"amount": "0"},
        {"amount": "0000000000001.5"},
        {"amount": "999999999999.999999000"},
        {"margin_rate": "1.000"},
        {"margin_rate": 0},
        {"occurred_at": "2026-11-20 10:15:00.123456789z"},
        {"unknown_field": {"producers": "may add fields"}},
    ],
)
def test_edge_inputs_the_decoder_accepts_the_schema_accepts(change: dict[str, Any]) -> None:
    doc = {**PURCHASE, **change}
    assert decoder_accepts("purchase", doc)
    assert schema_accepts("purchase", doc)


DECIMAL_TEXT = st.text(alphabet="0123456789.-+e ", max_size=22)


@settings(max_examples=400, deadline=None)
@given(text=DECIMAL_TEXT | st.from_regex(r"\A[0-9]{1,14}(\.[0-9]{1,13})?\Z"))
def test_amount_strings_schema_agrees_with_the_decoder(text: str) -> None:
    doc = {**PURCHASE, "amount": text}
    assert schema_accepts("purchase", doc) == decoder_accepts("purchase", doc), text


@settings(max_examples=300, deadline=None)
@given(text=DECIMAL_TEXT | st.from_regex(r"\A[01]{1,3}(\.[0-9]{1,4})?\Z"))
def test_rate_strings_schema_agrees_with_the_decoder(text: str) -> None:
    doc = {**PURCHASE, "margin_rate": text}
    assert schema_accepts("purchase", doc) == decoder_accepts("purchase", doc), text


# ----------------------------------------------------------------------------- outputs


def processor(model: ModelSnapshot | None) -> Processor:
    p = Processor(
        StateConfig(fx=FX),
        ValuationConfig(cac={"organic": Decimal("25"), "paid_search": Decimal("40")}),
        base_currency="USD",
        max_bytes=65536,
    )
    p.model = model
    return p


def garbage() -> list[tuple[EventType, bytes | None, bytes]]:
    """Inputs of every dead-letter code the decoder gives, for customer c-000001."""
    key = b"c-000001"
    good = {**PURCHASE, "customer_id": "c-000001", "event_id": "g-1", "order_id": "g-1"}
    return [
        ("purchase", key, b"{not json"),
        ("purchase", key, b"\xff\xfe\x00binary"),
        ("purchase", key, orjson.dumps({k: v for k, v in good.items() if k != "amount"})),
        ("purchase", key, orjson.dumps({**good, "currency": "XXX"})),
        ("purchase", b"someone-else", orjson.dumps(good)),
        ("purchase", None, orjson.dumps(good)),
        ("purchase", key, orjson.dumps({**good, "reason": "x" * 70_000})),
        ("cancellation", key, orjson.dumps([1, 2])),
        ("feedback", key, orjson.dumps({**FEEDBACK, "customer_id": "c-000001", "score": 11})),
    ]


def outputs_of(p: Processor) -> Iterator[Output]:
    """Every output of the demo year, bad records, a held cancellation that is
    never matched, NPS answers, time-driven ticks a year on and a GET /customers body."""
    stored: dict[bytes | None, bytes] = {}
    ghost = {**CANCELLATION, "customer_id": "c-000001", "order_id": "never-bought"}
    ghost["occurred_at"] = START.isoformat()
    answers = [
        {**FEEDBACK, "customer_id": "c-000001", "occurred_at": START.isoformat()},
        {**FEEDBACK, "customer_id": "c-000002", "event_id": "f-2", "comment": None},
    ]
    valid: list[tuple[EventType, bytes | None, bytes]] = [
        ("cancellation", b"c-000001", orjson.dumps(ghost)),
        *demo_events(),
        *(("feedback", a["customer_id"].encode(), orjson.dumps(a)) for a in answers),
    ]
    now = START
    offsets = dict.fromkeys(TOPICS, 0)  # one partition of each input topic
    for n, (kind, key, value) in enumerate([*valid, *garbage()]):
        topic = TOPICS[kind]
        if n < len(valid):  # processed as it happens; the bad records at the end
            now = max(now, datetime.fromisoformat(orjson.loads(value)["occurred_at"]))
        record = Record(topic, 0, offsets[kind], key, value)
        offsets[kind] += 1
        result = p.handle(kind, record, stored.get(key), now)
        if result.state is not None:
            stored[key] = result.state
        yield from result.outputs
    for at in (now + timedelta(days=100), now + timedelta(days=400)):
        for key, value in list(stored.items()):
            tick = Record("t-inactivity", 0, 0, key, b"{}")
            result = p.handle("inactivity", tick, value, at)
            if result.state is not None:
                stored[key] = result.state
            yield from result.outputs
    for value in stored.values():
        yield Output("update", None, p.current_update(value, now))


KINDS = {"update": "update", "churn": "churn", "dead_letter": "dead_letter"}


def validate_all(outputs: Iterable[Output]) -> dict[str, set[str]]:
    """Validate each output; what was seen: update and churn causes, dead-letter
    codes and value encodings, and which figures were ever non-null."""
    keys = ("update", "churn", "code", "encoding", "set", "nps")
    seen: dict[str, set[str]] = {k: set() for k in keys}
    for out in outputs:
        assert_valid(out.kind, out.value)
        doc = orjson.loads(out.value)
        if out.kind == "update":
            seen["update"].add(doc["cause"]["type"])
            seen["set"].update(k for k, v in doc.items() if v is not None)
            seen["nps"].add(doc["nps_class"])
        elif out.kind == "churn":
            seen["churn"].add(doc["cause"])
        else:
            seen["code"].add(doc["error"]["code"])
            seen["encoding"].add(doc["value_encoding"])
    return seen


@pytest.mark.parametrize("model", [None, MODEL], ids=["before-a-fit", "fitted"])
def test_every_output_the_processor_renders_matches_its_schema(
    model: ModelSnapshot | None,
) -> None:
    seen = validate_all(outputs_of(processor(model)))
    assert seen["update"] == {"purchase", "cancellation", "feedback", "inactivity", "query"}
    assert {"purchase", "inactivity", "subscription_cancelled"} <= seen["churn"]
    assert seen["code"] == {
        "invalid_json",
        "schema",
        "unknown_currency",
        "key_mismatch",
        "too_large",
        "unknown_order",
    }
    assert seen["encoding"] == {"utf8", "base64"}
    if model is not None:  # every figure of an update is rendered at least once
        assert {"segment", "ltv_cac", "model", "p_alive", "expected_next_order_at"} <= seen["set"]
    assert seen["nps"] == {"promoter", "passive", "detractor", "unknown"}
