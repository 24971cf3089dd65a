"""Wire models of the input and output events, and the hot-path decoders.

The contract they implement is docs/input-events.md and docs/output-events.md;
docs/schemas/ holds the JSON Schema derived from these models (``streams.schemas``).

Validation decisions:

* Unknown fields are ignored, so producers can add fields without breaking a
  running worker (forward compatibility); every field we read is validated strictly.
* Money is ``Decimal``.  A JSON string must be a plain decimal (``"499.00"``); a JSON
  number is accepted too, but orjson reads numbers as binary doubles, so we convert
  via ``repr`` of the double, which gives back the written decimal for up to 15
  significant digits.  Producers that need more exactness send strings.
  Amounts are >= 0 (a zero-value order is a real order), below ``MAX_AMOUNT`` and
  carry at most ``MAX_DECIMAL_PLACES`` decimals, which bounds every sum and keeps it
  exact.  NaN and Infinity never get through (orjson rejects them, strings must
  match the decimal pattern).
* Timestamps must be RFC 3339 strings with an offset; a naive timestamp is a schema
  error because guessing a zone would silently move orders between days.  They
  are normalised to UTC.
* Ids are 1-128 printable characters (no control characters, which would corrupt
  logs and keys).
* Each failure class has one stable machine-readable code (``ErrorCode``) that
  the dead-letter topic and the ``ltv_dead_letter_total{reason}`` metric carry.
* Each wire type carries its JSON Schema (``WithJsonSchema``) where pydantic's
  own would be vague or wrong about what the validators accept or the
  serializers write; the unit tests check those schemas against the decoder.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
)

from state.fx import FxTable

DEFAULT_MAX_BYTES = 64 * 1024
MAX_AMOUNT = Decimal("1e12")
MAX_DECIMAL_PLACES = 6
MAX_ID_LENGTH = 128
CENT = Decimal("0.01")


class ErrorCode(StrEnum):
    """Reason codes of ``ltv.dead-letter`` (docs/output-events.md)."""

    INVALID_JSON = "invalid_json"
    SCHEMA = "schema"
    UNKNOWN_CURRENCY = "unknown_currency"
    TOO_LARGE = "too_large"
    KEY_MISMATCH = "key_mismatch"
    # A notice: the cancellation is still held and applied if its purchase comes.
    UNKNOWN_ORDER = "unknown_order"
    # The customer already remembers the most events allowed; not applied.
    CUSTOMER_LIMIT = "customer_limit"
    INTERNAL = "internal"


class EventError(Exception):
    """Why one input message was rejected; the worker dead-letters it with ``code``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


_DECIMAL_RE = re.compile(r"\d{1,13}(?:\.\d{1,12})?")
_RFC3339_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):  # bool is an int subclass; true is not an amount
        raise ValueError("expected a decimal number")
    if isinstance(value, str):
        if not _DECIMAL_RE.fullmatch(value):
            raise ValueError("expected a non-negative plain decimal string like '499.00'")
        return Decimal(value)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr gives the shortest string that reads back as the same double.
        try:
            return Decimal(repr(value))
        except InvalidOperation as exc:  # pragma: no cover - orjson never yields nan/inf
            raise ValueError("not a finite number") from exc
    raise ValueError("expected a decimal number or decimal string")


def _check_amount(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be finite")
    if value < 0:
        raise ValueError("must be >= 0")
    if value >= MAX_AMOUNT:
        raise ValueError(f"must be below {MAX_AMOUNT}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
        normal = value.normalize()
        n_exp = normal.as_tuple().exponent
        if isinstance(n_exp, int) and n_exp < -MAX_DECIMAL_PLACES:
            raise ValueError(f"at most {MAX_DECIMAL_PLACES} decimal places")
        return normal
    return value


def _check_rate(value: Decimal) -> Decimal:
    if not value.is_finite() or value < 0 or value > 1:
        raise ValueError("must be between 0 and 1")
    return value


def _to_utc(value: Any) -> datetime:
    if not isinstance(value, str) or not _RFC3339_RE.fullmatch(value):
        raise ValueError("expected an RFC 3339 timestamp with offset, e.g. 2026-11-20T10:15:00Z")
    text = value.upper()
    if "." in text:  # datetime keeps microseconds; drop nanosecond digits beyond them
        head, _, rest = text.partition(".")
        digits = re.match(r"\d+", rest)
        assert digits is not None
        text = head + "." + digits.group()[:6].ljust(6, "0") + rest[digits.end() :]
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"invalid timestamp: {exc}") from exc


def _check_id(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must be printable (no control characters)")
    return value


def _json_regex(pattern: re.Pattern[str]) -> str:
    r"""``pattern`` in JSON Schema's regex dialect, with ``[0-9]`` for ``\d``.

    JSON Schema's regular expressions are ECMA-262's, where ``\d`` is ASCII
    only, while Python's ``\d`` matches any script's digits; ``[0-9]`` means
    the same in both, and is what producers should send.
    """
    return pattern.pattern.replace(r"\d", "[0-9]")


def _decimal_string(value: str) -> str:
    """A whole-string pattern: the syntax of ``_DECIMAL_RE``, and ``value``
    (after any leading zeros) for the range the validator allows."""
    return f"^(?={_json_regex(_DECIMAL_RE)}$)0*(?:{value})$"


#: Below MAX_AMOUNT, leading zeros aside: at most 12 digits before the point.
_AMOUNT_DIGITS = len(str(int(MAX_AMOUNT))) - 1
_AMOUNT_SCHEMA: dict[str, Any] = {
    "description": (
        f"A decimal >= 0 and below {int(MAX_AMOUNT)} with at most {MAX_DECIMAL_PLACES} "
        'decimals (trailing zeros aside): a plain decimal string such as "499.00" '
        "(exact), or a JSON number (read as a double: exact up to 15 significant digits)."
    ),
    "anyOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": int(MAX_AMOUNT)},
        {
            "type": "string",
            "pattern": _decimal_string(
                rf"[0-9]{{1,{_AMOUNT_DIGITS}}}(?:\.[0-9]{{0,{MAX_DECIMAL_PLACES}}}0*)?"
            ),
        },
    ],
}
_RATE_SCHEMA: dict[str, Any] = {
    "description": "A fraction from 0 to 1: a plain decimal string or a JSON number.",
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": 1},
        {"type": "string", "pattern": _decimal_string(r"1(?:\.0*)?|(?:\.[0-9]*)?")},
    ],
}
_TIMESTAMP_SCHEMA: dict[str, Any] = {
    "description": (
        "An RFC 3339 timestamp with a UTC offset or Z, e.g. 2026-11-20T10:15:00+01:00; "
        "one without an offset is refused."
    ),
    "type": "string",
    "pattern": f"^{_json_regex(_RFC3339_RE)}$",
}
# What str.isprintable() refuses that a pattern can list without a Unicode
# database: C0 and C1 controls, the space separators other than the plain
# space, and the line and paragraph separators.
_NOT_PRINTABLE = r"\x00-\x1f\x7f-\x9f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_ID_SCHEMA: dict[str, Any] = {
    "description": (
        f"1 to {MAX_ID_LENGTH} printable characters; the decoder also refuses format, "
        "unassigned and private-use characters."
    ),
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "pattern": f"^[^{_NOT_PRINTABLE}]*$",
}

Amount = Annotated[
    Decimal,
    BeforeValidator(_to_decimal),
    AfterValidator(_check_amount),
    WithJsonSchema(_AMOUNT_SCHEMA),
]
Rate = Annotated[
    Decimal, BeforeValidator(_to_decimal), AfterValidator(_check_rate), WithJsonSchema(_RATE_SCHEMA)
]
Timestamp = Annotated[datetime, BeforeValidator(_to_utc), WithJsonSchema(_TIMESTAMP_SCHEMA)]
Id = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, strict=True),
    AfterValidator(_check_id),
    WithJsonSchema(_ID_SCHEMA),
]
_CURRENCY_PATTERN = r"^[A-Z]{3}$"
_CURRENCY_SCHEMA: dict[str, Any] = {
    "description": "An ISO 4217 code the worker's FX table knows (else unknown_currency).",
    "type": "string",
    "pattern": _CURRENCY_PATTERN,
}
Currency = Annotated[
    str, Field(pattern=_CURRENCY_PATTERN, strict=True), WithJsonSchema(_CURRENCY_SCHEMA)
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Item(_Input):
    sku: Id
    category: Id | None = None
    quantity: Annotated[int, Field(ge=0, le=1_000_000, strict=True)] = 1
    unit_price: Amount | None = None


class Interval(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class Subscription(_Input):
    plan_id: Id
    interval: Interval = Interval.MONTH


class Purchase(_Input):
    """One order, as shops publish it to orders.purchases (docs/input-events.md)."""

    event_id: Id
    order_id: Id
    customer_id: Id
    occurred_at: Timestamp
    amount: Amount
    currency: Currency
    margin_rate: Rate | None = None
    channel: Id | None = None
    items: Annotated[tuple[Item, ...], Field(max_length=1000)] = ()
    subscription: Subscription | None = None


class Scope(StrEnum):
    ORDER = "order"
    SUBSCRIPTION = "subscription"


class Cancellation(_Input):
    """A refund or cancellation of ``order_id``.

    ``amount`` is in ``currency`` when given, else in the order's own currency;
    no ``amount`` means the rest of the order (scope ``order``) or no refund at all
    (scope ``subscription``: ending a subscription does not refund the last charge).
    """

    event_id: Id
    order_id: Id
    customer_id: Id
    occurred_at: Timestamp
    amount: Amount | None = None
    currency: Currency | None = None
    scope: Scope = Scope.ORDER
    reason: Annotated[str, Field(max_length=256, strict=True)] | None = None


class Feedback(_Input):
    """One NPS answer, as published to customers.feedback (docs/input-events.md)."""

    event_id: Id
    customer_id: Id
    occurred_at: Timestamp
    # Strict: true, 9.0 and "9" are refused; a producer that sends them has a
    # bug that a silent conversion would hide.
    score: Annotated[int, Field(ge=0, le=10, strict=True)]
    comment: Annotated[str, Field(max_length=1000, strict=True)] | None = None


#: Any input event a shop publishes, and the names of their kinds.
InputEvent = Purchase | Cancellation | Feedback
InputKind = Literal["purchase", "cancellation", "feedback"]

_M = TypeVar("_M", bound=_Input)


def _decode(model: type[_M], raw: bytes, max_bytes: int) -> _M:
    if len(raw) > max_bytes:  # before parsing: never spend CPU on oversized input
        raise EventError(ErrorCode.TOO_LARGE, f"{len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # A syntactically valid number that no double can hold is a schema problem.
        code = ErrorCode.SCHEMA if "infinity" in str(exc) else ErrorCode.INVALID_JSON
        raise EventError(code, str(exc)) from None
    if not isinstance(doc, dict):
        raise EventError(ErrorCode.SCHEMA, f"expected a JSON object, got {type(doc).__name__}")
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise EventError(ErrorCode.SCHEMA, details) from None


def _check_currency(currency: str, fx: FxTable) -> None:
    if not fx.knows(currency):
        raise EventError(ErrorCode.UNKNOWN_CURRENCY, f"{currency} is not in the FX table")


def decode_purchase(raw: bytes, *, fx: FxTable, max_bytes: int = DEFAULT_MAX_BYTES) -> Purchase:
    """Parse and validate one ``orders.purchases`` message or raise ``EventError``."""
    purchase = _decode(Purchase, raw, max_bytes)
    _check_currency(purchase.currency, fx)
    return purchase


def decode_cancellation(
    raw: bytes, *, fx: FxTable, max_bytes: int = DEFAULT_MAX_BYTES
) -> Cancellation:
    """Parse and validate one ``orders.cancellations`` message or raise ``EventError``."""
    cancellation = _decode(Cancellation, raw, max_bytes)
    if cancellation.currency is not None:
        _check_currency(cancellation.currency, fx)
    return cancellation


def decode_feedback(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Feedback:
    """Parse and validate one ``customers.feedback`` message or raise ``EventError``."""
    return _decode(Feedback, raw, max_bytes)


def decode_event(
    kind: InputKind, raw: bytes, *, fx: FxTable, max_bytes: int = DEFAULT_MAX_BYTES
) -> InputEvent:
    """Parse and validate one message of input ``kind`` or raise ``EventError``."""
    if kind == "purchase":
        return decode_purchase(raw, fx=fx, max_bytes=max_bytes)
    if kind == "cancellation":
        return decode_cancellation(raw, fx=fx, max_bytes=max_bytes)
    return decode_feedback(raw, max_bytes=max_bytes)


def check_key(key: bytes | str | None, customer_id: str) -> None:
    """The Kafka key must be the customer id, or the event sits in the wrong partition
    and its customer's state would be split across workers."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    if text != customer_id:
        raise EventError(
            ErrorCode.KEY_MISMATCH, f"message key {text!r} differs from customer_id {customer_id!r}"
        )


# ---------------------------------------------------------------------------- outputs


def _money_str(value: Decimal) -> str:
    return format(value.quantize(CENT), "f")


def _utc_str(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


_MONEY_SCHEMA: dict[str, Any] = {
    "description": 'A decimal string with exactly two decimals, e.g. "2450.00".',
    "type": "string",
    "pattern": r"^-?[0-9]+\.[0-9]{2}$",
}
_UTC_TIME_SCHEMA: dict[str, Any] = {
    "description": "An instant in UTC, RFC 3339 with Z; microseconds only when not zero.",
    "type": "string",
    "format": "date-time",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{6})?Z$",
}
Money = Annotated[
    Decimal, PlainSerializer(_money_str, return_type=str), WithJsonSchema(_MONEY_SCHEMA)
]
UtcTime = Annotated[
    datetime, PlainSerializer(_utc_str, return_type=str), WithJsonSchema(_UTC_TIME_SCHEMA)
]
RiskLevel = Literal["low", "medium", "high", "churned"]
#: A customer's NPS class: that of their latest score, "unknown" without one.
NpsClass = Literal["promoter", "passive", "detractor", "unknown"]


class _Output(BaseModel):
    # Every field is on the wire, defaults included: the schema says so.
    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON; money as 2-decimal strings, times as UTC ``...Z``."""
        return self.model_dump_json().encode()


def _utc(value: datetime) -> datetime:
    """The instant in UTC, which orjson writes as ``_utc_str`` does (``...Z``)."""
    return value if value.tzinfo is UTC else value.astimezone(UTC)


Convert = Any  # a one-argument callable, or None for "as it is"
_REQUIRED = object()


def _converter(annotation: Any, metadata: list[Any] | None = None) -> Convert:
    """How one field's value becomes what orjson writes as pydantic would."""
    if metadata:  # pydantic keeps a field's own Annotated extras apart
        return _converter(Annotated[(annotation, *metadata)])
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        inner = [a for a in get_args(annotation) if a is not NoneType]
        if len(inner) != 1:
            raise TypeError(f"no fast encoding for {annotation}")
        convert = _converter(inner[0])
        if convert is None:
            return None
        return lambda v: None if v is None else convert(v)
    if origin is Annotated:
        base, *meta = get_args(annotation)
        for m in meta:
            if isinstance(m, PlainSerializer):
                if m.func is _money_str:
                    return _money_str
                if m.func is _utc_str:
                    return _utc
                raise TypeError(f"no fast encoding for serializer {m.func}")
        return _converter(base)
    if annotation is float:
        return float
    if isinstance(annotation, type) and issubclass(annotation, _Output):
        nested = OutputEncoder(annotation)
        return nested.fields_of
    return None


class OutputEncoder:
    """JSON of an output model from plain values, without validating them.

    Byte for byte what ``Model(**values).to_json()`` gives (the unit tests
    check it over generated values), at a fraction of its cost: the hot path
    renders every update, and the values come from this service's own
    computation, not from outside. The encoding is derived from the model's
    field annotations, so the pydantic model stays the one definition of the
    output contract; a field type it cannot derive raises at construction.
    Nested models may be given as dicts or as model instances.
    """

    def __init__(self, model: type[_Output]) -> None:
        self.fields: tuple[tuple[str, Convert, Any], ...] = tuple(
            (
                name,
                _converter(info.annotation, info.metadata),
                _REQUIRED if info.is_required() else info.get_default(call_default_factory=True),
            )
            for name, info in model.model_fields.items()
        )

    def fields_of(self, values: dict[str, Any] | _Output) -> dict[str, Any]:
        """The JSON-ready fields of ``values`` in the model's order."""
        if isinstance(values, _Output):
            values = dict(values)
        out = {}
        for name, convert, default in self.fields:
            value = values[name] if default is _REQUIRED else values.get(name, default)
            out[name] = value if convert is None else convert(value)
        return out

    def encode(self, values: dict[str, Any]) -> bytes:
        return orjson.dumps(self.fields_of(values), option=orjson.OPT_UTC_Z)


class Cause(_Output):
    # "query": a body rendered for GET /customers/{id} rather than published.
    type: Literal["purchase", "cancellation", "feedback", "inactivity", "model_refit", "query"]
    event_id: str | None = None


class ModelRef(_Output):
    name: str
    version: str | None = None


class LtvUpdate(_Output):
    """A customer's valuation after a change, on ltv.updates (docs/output-events.md)."""

    customer_id: str
    version: int
    as_of: UtcTime
    cause: Cause
    currency: str
    value_basis: Literal["revenue", "margin"]
    orders: int
    net_revenue: Money
    aov: Money | None
    first_order_at: UtcTime | None
    last_order_at: UtcTime | None
    historic_ltv: Money
    formula_ltv: Money | None
    predicted_ltv: Money | None
    total_ltv: Money
    expected_orders: float | None
    p_alive: float | None
    churn_risk: RiskLevel | None
    expected_next_order_at: UtcTime | None
    segment: str | None
    ltv_cac: float | None
    model: ModelRef | None
    nps_class: NpsClass


class ChurnRiskChange(_Output):
    """A change of a customer's churn-risk level, on ltv.churn-risk (docs/output-events.md)."""

    customer_id: str
    version: int
    as_of: UtcTime
    previous: RiskLevel | None
    current: RiskLevel
    p_alive: float | None
    days_since_last_order: int | None
    expected_next_order_at: UtcTime | None
    cause: Literal[
        "purchase",
        "cancellation",
        "feedback",
        "inactivity",
        "subscription_cancelled",
        "model_refit",
    ]


class DeadLetterError(_Output):
    code: ErrorCode
    message: str


class DeadLetter(_Output):
    """A rejected input record or a held-cancellation notice, on ltv.dead-letter.

    Codes and their meaning: docs/input-events.md.
    """

    source_topic: str
    partition: int
    offset: int
    key: str | None
    value: str
    value_encoding: Literal["utf8", "base64"]
    error: DeadLetterError
    failed_at: UtcTime

    @classmethod
    def build(
        cls,
        *,
        source_topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        error: EventError,
        failed_at: datetime,
    ) -> DeadLetter:
        """Keep the original bytes: UTF-8 text when they are, base64 otherwise."""
        try:
            text, encoding = value.decode("utf-8"), "utf8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(value).decode("ascii"), "base64"
        return cls(
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=None if key is None else key.decode("utf-8", "replace"),
            value=text,
            value_encoding=encoding,  # type: ignore[arg-type]
            error=DeadLetterError(code=error.code, message=error.message),
            failed_at=failed_at,
        )


#: The hot path's encoders of the published records (see ``OutputEncoder``).
UPDATE_ENCODER = OutputEncoder(LtvUpdate)
CHURN_ENCODER = OutputEncoder(ChurnRiskChange)
