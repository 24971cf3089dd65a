"""Redis-backed Faust table store (docs/operations.md, State).

``register()`` maps the Redis URL schemes to :class:`RedisStore` in Faust's
store registry. The same mapping is installed as ``faust.stores`` entry
points (pyproject.toml), so ``redis://`` never falls through to the
redis-py module even if ``register()`` was not called; calling it is still
the explicit, import-order-proof way::

    import state.store
    state.store.register()
    app = faust.App(..., store=settings.redis_url)   # redis:// rediss:// redis+cluster://
"""

from __future__ import annotations

from faust.stores import STORES

from state.store.config import SCHEMES
from state.store.redis_store import PartitionFenced, RedisStore

__all__ = ["SCHEMES", "PartitionFenced", "RedisStore", "register"]

_TARGET = "state.store.redis_store:RedisStore"


def register() -> None:
    """Make Faust resolve every Redis store scheme to :class:`RedisStore`."""
    for scheme in SCHEMES:
        STORES.aliases[scheme] = _TARGET
