"""Validate records against the checked-in JSON Schema files (docs/schemas).

Shared by the unit and the integration tests (pyproject's pytest
``pythonpath`` puts tests/ on the path), so every record a test reads from an
output topic, and every record the processor renders, is checked against the
same files users get.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema

from streams.schemas import EVENTS, EventKind

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "docs" / "schemas"


@cache
def validator(kind: EventKind) -> jsonschema.protocols.Validator:
    """The validator of ``kind``'s checked-in schema, checked itself first."""
    (event,) = [e for e in EVENTS if e.kind == kind]
    schema = json.loads((SCHEMA_DIR / event.filename).read_bytes())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def assert_valid(kind: EventKind, value: bytes) -> None:
    """``value`` (a record's JSON bytes) conforms to ``kind``'s schema."""
    errors = sorted(validator(kind).iter_errors(json.loads(value)), key=str)
    assert not errors, f"{kind} record does not match its schema: {errors[0].message}\n{value!r}"
