"""Build the preset deflate dictionary of the state codec from demo-shop states.

    .venv/bin/python bench/zdict.py state/data/state-zdict-v3.txt

Replays the synthetic feed of ``ltv demo`` (seed 7, 5 000 customers, a year)
through the pure transitions and writes the JSON bodies of a seeded sample of
the final states, newest-written last and cut to 2 KiB from the front (deflate
finds matches near the end of a dictionary most cheaply).  The dictionary is
frozen with its codec format: rerun this only for a new format byte.
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

from state.codec import encode_body
from state.customer import CustomerState, StateConfig, apply_event, new_state
from state.events import decode_event
from state.fx import load_fx_table
from streams.demo import DemoFeed

SIZE = 2048


def demo_states(customers: int, seed: int) -> list[CustomerState]:
    """Every customer's final state after the demo feed."""
    fx = load_fx_table()
    cfg = StateConfig(fx=fx)
    states: dict[str, CustomerState] = {}
    for event in DemoFeed(customers, seed, datetime(2025, 1, 1, tzinfo=UTC)):
        raw = orjson.dumps(event.value)
        state = states.get(event.key) or new_state(event.key)
        states[event.key] = apply_event(state, decode_event(event.kind, raw, fx=fx), cfg).state
    return list(states.values())


def build(customers: int = 5000, seed: int = 7) -> bytes:
    states = demo_states(customers, seed)
    rng = random.Random(seed)
    sample = b"\n".join(encode_body(s) for s in rng.sample(states, 40))
    return sample[-SIZE:]


if __name__ == "__main__":
    Path(sys.argv[1]).write_bytes(build())
