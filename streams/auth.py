"""Bearer-token check of the HTTP API (LTV_API_TOKEN, docs/http.md).

One function for every protected view (/model, /customers/{id}), so the
comparison is done the same way everywhere: in constant time, and without
the token or the presented credential ever reaching a log line.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Protocol


class HasHeaders(Protocol):
    """Anything with request headers (a Faust/aiohttp request, a test stub)."""

    @property
    def headers(self) -> Mapping[str, str]: ...


def authorized(request: HasHeaders, token: str | None) -> bool:
    """True when no token is configured, or the request carries ``Bearer <token>``."""
    if not token:
        return True
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())
