"""Every documented store URL form through the one Redis client factory, and URL masking.

No server is needed: the clients are built, never connected, and what they
would connect with is read from redis-py's public connection settings.
"""

from __future__ import annotations

import pytest
import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.connection import Connection, SSLConnection

from state.store.config import StoreConfig, mask_url
from streams.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("url", "ssl", "host", "port", "db"),
    [
        ("redis://127.0.0.1:6379/0?cache_size=50000", False, "127.0.0.1", 6379, 0),
        ("redis://h/3?flush_interval=0.2&max_dirty=10&socket_timeout=2", False, "h", 6379, 3),
        ("rediss://h:6380/1?ssl_ca_certs=/etc/ca.pem&chunk_keys=7", True, "h", 6380, 1),
        ("redis://user:pw@h:6379/2?timeout=5", False, "h", 6379, 2),
    ],
)
def test_standalone_urls(url: str, ssl: bool, host: str, port: int, db: int) -> None:
    client = StoreConfig.from_url(url).async_client()
    assert isinstance(client, redis.asyncio.Redis)
    pool = client.connection_pool
    assert pool.connection_class is (SSLConnection if ssl else Connection)
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs.get("port", 6379), kwargs["db"]) == (host, port, db)
    # Store options are the store's: redis-py never sees them (it would refuse them).
    for option in ("cache_size", "flush_interval", "max_dirty", "chunk_keys", "timeout"):
        assert option not in kwargs


def test_credentials_and_tls_options_reach_redis_py() -> None:
    url = "rediss://ltv:p%40ss@h:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required"
    kwargs = StoreConfig.from_url(url).async_client().connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("ltv", "p@ss")
    assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    assert kwargs["ssl_cert_reqs"] == "required"


def test_password_only_url_is_requirepass_auth() -> None:
    kwargs = StoreConfig.from_url("redis://:s3cret@h/0").sync_client().connection_pool
    assert kwargs.connection_kwargs["password"] == "s3cret"
    assert kwargs.connection_kwargs.get("username") in (None, "")


@pytest.mark.parametrize(
    ("url", "ssl"),
    [
        ("redis+cluster://:pw@h:7000/0?cache_size=100", False),
        ("rediss+cluster://user:pw@h:7000?ssl_cert_reqs=none", True),
        ("redis://h:7000/0?cluster=1", False),
    ],
)
def test_cluster_urls(url: str, ssl: bool) -> None:
    config = StoreConfig.from_url(url)
    assert config.cluster
    client = config.async_client()
    assert isinstance(client, redis.asyncio.cluster.RedisCluster)
    kwargs = client.get_connection_kwargs()
    assert kwargs["connection_class"] is (SSLConnection if ssl else Connection)
    assert "cache_size" not in kwargs and "cluster" not in kwargs
    if "pw@" in url:
        assert kwargs["password"] == "pw"


def test_unknown_scheme_is_refused_without_the_password() -> None:
    with pytest.raises(ValueError, match="not a Redis store URL") as info:
        StoreConfig.from_url("http://u:s3cret@h/0")
    assert "s3cret" not in str(info.value)
    assert "redis+cluster://" in str(info.value)


def test_config_repr_hides_the_password() -> None:
    assert "s3cret" not in repr(StoreConfig.from_url("redis://:s3cret@h/0"))


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://ltv:s3cret@h/0?ssl_ca_certs=/ca", "rediss://ltv:***@h/0?ssl_ca_certs=/ca"),
        ("redis://ltv@h/0", "redis://ltv@h/0"),
        ("redis://u:p@ss@h/0", "redis://u:***@h/0"),
        ("redis://h/0?password=s3cret&db=1", "redis://h/0?password=***&db=1"),
        ("rediss+cluster://u:s3cret@h:7000", "rediss+cluster://u:***@h:7000"),
        ("not a url s3cret", "not a url s3cret"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_settings_accept_every_store_scheme_and_mask_bad_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for url in ("rediss+cluster://h:7000/0", "redis://h/0?cache_size=50000"):
        monkeypatch.setenv("LTV_REDIS_URL", url)
        assert load_settings().redis_url == url
    monkeypatch.setenv("LTV_REDIS_URL", "redis://:s3cret@h/0?cache_size=lots")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("invalid setting LTV_REDIS_URL='redis://:***@h/0?cache_size=lots'")
    assert "s3cret" not in message
