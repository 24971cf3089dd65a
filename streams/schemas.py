"""JSON Schema of every input and output event, derived from the wire models.

The pydantic models of ``state.events`` are the one definition of the wire
format; the files under docs/schemas/ are generated from them, so producers
and consumers in any language can validate records against exactly what the
worker accepts and emits. Inputs are described as the decoder validates them
(pydantic's validation mode), outputs as they are on the wire (serialization
mode: money as 2-decimal strings, times as UTC ``...Z`` strings).

``ltv schema`` writes the files and ``ltv schema --check`` reports stale
ones; a unit test fails when the checked-in files differ from ``generate()``,
so a model change cannot ship without its schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

from state.events import (
    Cancellation,
    ChurnRiskChange,
    DeadLetter,
    Feedback,
    LtvUpdate,
    Purchase,
)

#: Where ``ltv schema`` writes by default, relative to a source checkout.
SCHEMA_DIR = Path("docs/schemas")
DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: The events: inputs by topic kind, outputs by ``state.envelope.OutputKind``.
EventKind = Literal["purchase", "cancellation", "feedback", "update", "churn", "dead_letter"]


@dataclass(frozen=True)
class EventSchema:
    """One event's model, the side of the wire it is on, and its file name."""

    kind: EventKind
    model: type[BaseModel]
    mode: JsonSchemaMode
    name: str

    @property
    def filename(self) -> str:
        return f"{self.name}.schema.json"


EVENTS: tuple[EventSchema, ...] = (
    EventSchema("purchase", Purchase, "validation", "purchase"),
    EventSchema("cancellation", Cancellation, "validation", "cancellation"),
    EventSchema("feedback", Feedback, "validation", "feedback"),
    EventSchema("update", LtvUpdate, "serialization", "ltv-update"),
    EventSchema("churn", ChurnRiskChange, "serialization", "churn-risk-change"),
    EventSchema("dead_letter", DeadLetter, "serialization", "dead-letter"),
)


class _WireSchema(GenerateJsonSchema):
    """pydantic's generator without the per-field titles it derives from field
    names ("Event Id"): they restate the property name and say nothing more."""

    def field_title_should_be_set(self, schema: object) -> bool:
        return False


def schema_of(event: EventSchema) -> dict[str, Any]:
    """The JSON Schema document of one event."""
    schema = event.model.model_json_schema(mode=event.mode, schema_generator=_WireSchema)
    return {"$schema": DIALECT, **schema}


def render(schema: dict[str, Any]) -> bytes:
    """Deterministic bytes: sorted keys, two-space indent, ASCII, trailing newline."""
    return (json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()


def generate() -> dict[str, bytes]:
    """Every event's schema file: file name -> contents."""
    return {event.filename: render(schema_of(event)) for event in EVENTS}


def stale(directory: Path, generated: dict[str, bytes]) -> list[str]:
    """The files of ``generated`` that ``directory`` lacks or holds with other bytes."""
    out = []
    for name, body in sorted(generated.items()):
        path = directory / name
        if not path.is_file() or path.read_bytes() != body:
            out.append(name)
    return out


def write(directory: Path, generated: dict[str, bytes]) -> list[str]:
    """Write the stale files of ``generated`` into ``directory``; their names."""
    changed = stale(directory, generated)
    directory.mkdir(parents=True, exist_ok=True)
    for name in changed:
        (directory / name).write_bytes(generated[name])
    return changed
