"""Store addresses (``s3://bucket/prefix``, ``file:///dir``, plain paths) and the one place that reads storage env vars."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping
from urllib.parse import unquote, urlsplit

import certifi
import urllib3
from minio import Minio

from hybridmi.store.base import ArtifactStore
from hybridmi.store.local import LocalStore
from hybridmi.store.retry import RetryPolicy
from hybridmi.store.s3 import S3Store

ENDPOINT_VAR = "HYBRIDMI_S3_ENDPOINT"  # host:port or http(s)://host:port
SECURE_VAR = "HYBRIDMI_S3_SECURE"  # true/false; default: the URL scheme, else true
REGION_VAR = "HYBRIDMI_S3_REGION"
ATTEMPTS_VAR = "HYBRIDMI_S3_RETRY_ATTEMPTS"
DELAY_VAR = "HYBRIDMI_S3_RETRY_DELAY_S"
# First name found wins: AWS convention, MinIO convention, the KFP secret's keys mounted as env.
ACCESS_KEY_VARS = ("AWS_ACCESS_KEY_ID", "MINIO_ACCESS_KEY", "accesskey")
SECRET_KEY_VARS = ("AWS_SECRET_ACCESS_KEY", "MINIO_SECRET_KEY", "secretkey")
SESSION_TOKEN_VAR = "AWS_SESSION_TOKEN"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class StoreConfigError(ValueError):
    """Storage settings that cannot be used; one line naming the variable (never its secret value)."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix')."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"store URI {uri!r} is not of the form s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")


def _local_root(uri: str) -> Path:
    if uri.startswith("file://"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"store URI {uri!r}: file URIs must be local (file:///path)")
        return Path(unquote(parts.path))
    if "://" in uri:
        raise ValueError(f"store URI {uri!r} has an unsupported scheme; use s3://bucket/prefix, file:///dir or a path")
    return Path(uri)


def open_store(
    uri: str | Path,
    *,
    client: Minio | None = None,
    retry: RetryPolicy = RetryPolicy(),
    part_size: int = 16 * 1024 * 1024,
) -> ArtifactStore:
    """A LocalStore for ``file://``/plain paths; an S3Store for ``s3://bucket/prefix`` over ``client``."""
    uri = str(uri)
    if not uri:
        raise ValueError("store URI is empty")
    if uri.startswith("s3://"):
        bucket, prefix = parse_s3_uri(uri)
        if client is None:
            raise ValueError(f"store URI {uri!r} needs a minio client (stages build one with store_from_env)")
        return S3Store(client, bucket, prefix, retry=retry, part_size=part_size)
    return LocalStore(_local_root(uri))


def _first(env: Mapping[str, str], names: tuple[str, ...], what: str) -> str:
    for name in names:
        if env.get(name):
            return env[name]
    raise StoreConfigError(f"{what} for object storage is missing: set {names[0]} (or {', '.join(names[1:])})")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE | _FALSE:
        raise StoreConfigError(f"{name}={env[name]!r} is not a boolean (use true or false)")
    return raw in _TRUE


def _number(env: Mapping[str, str], name: str, kind: type, default: float) -> float:
    raw = env.get(name, "").strip()
    try:
        return kind(raw) if raw else default
    except ValueError:
        raise StoreConfigError(f"{name}={raw!r} is not a {kind.__name__}") from None


def endpoint_from_env(env: Mapping[str, str]) -> tuple[str, bool]:
    """(host:port, secure) from HYBRIDMI_S3_ENDPOINT and HYBRIDMI_S3_SECURE."""
    raw = env.get(ENDPOINT_VAR, "").strip()
    if not raw:
        raise StoreConfigError(f"{ENDPOINT_VAR} is not set: give the object storage endpoint as host:port or a URL")
    parts = urlsplit(raw if "://" in raw else f"//{raw}")
    if parts.scheme not in ("", "http", "https") or not parts.netloc or parts.path.strip("/"):
        raise StoreConfigError(f"{ENDPOINT_VAR}={raw!r} is not host:port or http(s)://host:port")
    secure = _flag(env, SECURE_VAR, default=parts.scheme != "http")
    if parts.scheme and secure != (parts.scheme == "https"):
        raise StoreConfigError(f"{SECURE_VAR}={env[SECURE_VAR]!r} contradicts the scheme of {ENDPOINT_VAR}={raw!r}")
    return parts.netloc, secure


def store_from_env(uri: str | Path, env: Mapping[str, str] = os.environ) -> ArtifactStore:
    """The store for ``uri`` with endpoint, credentials, TLS, region and retries taken from ``env``.

    Local URIs need no variables. For ``s3://`` URIs the Minio client gets its own connection pool
    without urllib3-level retries, so that RetryPolicy is the only retry loop (and the only delays).
    """
    uri = str(uri)
    retry = RetryPolicy(
        attempts=int(_number(env, ATTEMPTS_VAR, int, 5)), base_delay_s=float(_number(env, DELAY_VAR, float, 0.5))
    )
    if not uri.startswith("s3://"):
        return open_store(uri, retry=retry)
    parse_s3_uri(uri)
    host, secure = endpoint_from_env(env)
    access_key = _first(env, ACCESS_KEY_VARS, "the access key")
    secret_key = _first(env, SECRET_KEY_VARS, "the secret key")
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10, read=120),
        maxsize=10,
        retries=False,
        cert_reqs="CERT_REQUIRED",
        ca_certs=env.get("SSL_CERT_FILE") or certifi.where(),
    )
    client = Minio(
        host,
        access_key=access_key,
        secret_key=secret_key,
        session_token=env.get(SESSION_TOKEN_VAR) or None,
        secure=secure,
        region=env.get(REGION_VAR) or None,
        http_client=http,
    )
    return open_store(uri, client=client, retry=retry)
