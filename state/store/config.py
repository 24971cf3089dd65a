"""Store URL: which Redis to use and how the write-back buffer behaves.

``redis://host:port/db``, ``rediss://...`` (TLS) and ``redis+cluster://`` /
``rediss+cluster://`` (or ``?cluster=1``) select the server. Query options
of the store itself are removed before the URL is handed to redis-py; every
other query option (``ssl_cert_reqs``, ``socket_timeout``, ...) passes through.

Options: ``flush_interval`` (s, 0.5), ``flush_keys`` (sealed keys that
trigger an early flush, 10000), ``max_dirty`` (buffered keys above which
``prefetch`` blocks -- backpressure, 200000), ``cache_size`` (clean LRU
entries, 20000: with one pipelined prefetch per batch a miss is cheap, and
each cached state costs the worker ~1 KB), ``chunk_keys`` (keys per Lua call, 5000), ``timeout``
(producer flush and shutdown/revocation flush deadline, s, 30).

Redis AUTH and TLS are part of the URL, as redis-py reads it:
``redis://user:password@host:6379/0`` (ACL user) or ``redis://:password@host``
(``requirepass``); ``rediss://`` turns TLS on, with ``ssl_ca_certs=<CA file>``,
``ssl_certfile=`` / ``ssl_keyfile=`` (client certificate) and
``ssl_cert_reqs=required|optional|none`` as query options. Characters of the
password that are special in a URL are percent-encoded. :func:`mask_url`
hides the password wherever a URL is shown.

:meth:`StoreConfig.async_client` / :meth:`StoreConfig.sync_client` are the
project's only Redis client factory: the store, the worker's readiness
check, the fit job and the CLI all connect through them, so every URL form
above works the same everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from yarl import URL

__all__ = ["CLUSTER_SCHEMES", "SCHEMES", "StoreConfig", "mask_url"]

#: Schemes that select a standalone (or Sentinel-fronted) Redis.
PLAIN_SCHEMES = ("redis", "rediss")
#: Schemes that select Redis Cluster.
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = PLAIN_SCHEMES + CLUSTER_SCHEMES

_TRUE = {"1", "true", "yes", "on"}
#: The password of a URL's user info (greedy: an unencoded "@" in it stays hidden).
_USERINFO_PASSWORD = re.compile(r"(?<=://)([^/@:]*):[^/]*@")
#: A password given as a query option (redis-py reads ``?password=``).
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and error messages.

    Works on the text, not on a parsed URL, so a URL too broken to parse is
    masked all the same.
    """
    return _QUERY_PASSWORD.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1:***@", url))


@dataclass(frozen=True)
class StoreConfig:
    """Parsed store URL."""

    client_url: str = field(repr=False)  # may carry a password
    cluster: bool = False
    flush_interval: float = 0.5
    flush_keys: int = 10_000
    max_dirty: int = 200_000
    cache_size: int = 20_000
    chunk_keys: int = 5_000
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str | URL) -> StoreConfig:
        """Parse a store URL, rejecting unknown schemes and bad values."""
        shown = mask_url(str(url))
        url = URL(str(url))
        if url.scheme not in SCHEMES:
            raise ValueError(
                f"not a Redis store URL: {shown} (use {', '.join(s + '://' for s in SCHEMES)})"
            )
        query = dict(url.query)
        cluster = url.scheme in CLUSTER_SCHEMES or query.pop("cluster", "0").lower() in _TRUE
        kwargs: dict[str, Any] = {}
        try:
            for name in ("flush_interval", "timeout"):
                if name in query:
                    kwargs[name] = float(query.pop(name))
            for name in ("flush_keys", "max_dirty", "cache_size", "chunk_keys"):
                if name in query:
                    kwargs[name] = int(query.pop(name))
        except ValueError as exc:
            raise ValueError(f"bad option in store URL {shown}: {exc}") from exc
        scheme = url.scheme.removesuffix("+cluster")
        client_url = url.with_scheme(scheme).with_query(query)
        return cls(client_url=str(client_url), cluster=cluster, **kwargs)

    def sync_client(self) -> redis.Redis | redis.cluster.RedisCluster:
        """Return a blocking client (reads that cannot wait, iteration, reset)."""
        if self.cluster:
            return redis.cluster.RedisCluster.from_url(self.client_url)
        return redis.Redis.from_url(self.client_url)

    def async_client(self) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
        """Return an asyncio client (claims, prefetch, flushes)."""
        if self.cluster:
            return redis.asyncio.cluster.RedisCluster.from_url(self.client_url)
        return redis.asyncio.Redis.from_url(self.client_url)
