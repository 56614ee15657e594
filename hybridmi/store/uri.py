"""Store addresses (``s3://bucket/prefix``, ``file:///dir``, plain paths) and the one place that reads storage env vars."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

import certifi
import urllib3
from minio import Minio

from hybridmi.errors import UsageError
from hybridmi.store.base import ArtifactStore
from hybridmi.store.local import LocalStore
from hybridmi.store.s3 import RetryPolicy, S3Store

ENDPOINT_VAR = "HYBRIDMI_S3_ENDPOINT"  # host:port or http(s)://host:port
SECURE_VAR = "HYBRIDMI_S3_SECURE"  # true/false; default: the URL scheme, else true
REGION_VAR = "HYBRIDMI_S3_REGION"
ATTEMPTS_VAR = "HYBRIDMI_S3_RETRY_ATTEMPTS"
DELAY_VAR = "HYBRIDMI_S3_RETRY_DELAY_S"
DEADLINE_VAR = "HYBRIDMI_S3_DEADLINE_S"  # no retry of an operation starts after this many seconds
# Per request: seconds to connect (also the limit on a stalled send) and to wait for the next bytes of an answer.
CONTROL_TIMEOUT = urllib3.Timeout(connect=5, read=10)  # probes, manifests, pointers, lists, deletes
TRANSFER_TIMEOUT = urllib3.Timeout(connect=10, read=60)  # artifact files: a minute without a byte is an outage
# First name found wins: AWS convention, MinIO convention, the KFP secret's keys mounted as env.
ACCESS_KEY_VARS = ("AWS_ACCESS_KEY_ID", "MINIO_ACCESS_KEY", "accesskey")
SECRET_KEY_VARS = ("AWS_SECRET_ACCESS_KEY", "MINIO_SECRET_KEY", "secretkey")
SESSION_TOKEN_VAR = "AWS_SESSION_TOKEN"
_BOOLS = {**dict.fromkeys(("1", "true", "yes", "on"), True), **dict.fromkeys(("0", "false", "no", "off"), False)}


class StoreConfigError(UsageError):
    """Storage settings that cannot be used; one line naming the variable (never its secret value)."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix')."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise UsageError(f"store URI {uri!r} is not of the form s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")


def open_store(uri: str | Path) -> LocalStore:
    """The LocalStore of a ``file://`` URI or a plain path (an ``s3://`` store comes from ``store_from_env``)."""
    uri = str(uri)
    if not uri:
        raise UsageError("store URI is empty")
    if uri.startswith("s3://"):
        raise UsageError(f"store URI {uri!r} needs a minio client: stages build the store with store_from_env")
    if uri.startswith("file://"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"store URI {uri!r}: file URIs must be local (file:///path)")
        return LocalStore(Path(unquote(parts.path)))
    if "://" in uri:
        raise UsageError(f"store URI {uri!r} has an unsupported scheme; use s3://bucket/prefix, file:///dir or a path")
    return LocalStore(Path(uri))


def _first(env: Mapping[str, str], names: tuple[str, ...], what: str) -> str:
    if value := next((env[name] for name in names if env.get(name)), None):
        return value
    raise StoreConfigError(f"{what} for object storage is missing: set {names[0]} (or {', '.join(names[1:])})")


def _setting(env: Mapping[str, str], name: str, kind: type, default: Any) -> Any:
    """``kind(env[name])`` (a bool from true/false, yes/no, on/off, 1/0), ``default`` when unset."""
    raw = env.get(name, "").strip()
    try:
        return (_BOOLS[raw.lower()] if kind is bool else kind(raw)) if raw else default
    except (ValueError, KeyError):
        raise StoreConfigError(f"{name}={raw!r} is not a {kind.__name__} value") from None


def endpoint_from_env(env: Mapping[str, str]) -> tuple[str, bool]:
    """(host:port, secure) from HYBRIDMI_S3_ENDPOINT and HYBRIDMI_S3_SECURE."""
    raw = env.get(ENDPOINT_VAR, "").strip()
    if not raw:
        raise StoreConfigError(f"{ENDPOINT_VAR} is not set: give the object storage endpoint as host:port or a URL")
    parts = urlsplit(raw if "://" in raw else f"//{raw}")
    if parts.scheme not in ("", "http", "https") or not parts.netloc or parts.path.strip("/"):
        raise StoreConfigError(f"{ENDPOINT_VAR}={raw!r} is not host:port or http(s)://host:port")
    secure = _setting(env, SECURE_VAR, bool, parts.scheme != "http")
    if parts.scheme and secure != (parts.scheme == "https"):
        raise StoreConfigError(f"{SECURE_VAR}={env[SECURE_VAR]!r} contradicts the scheme of {ENDPOINT_VAR}={raw!r}")
    return parts.netloc, secure


def store_from_env(uri: str | Path, env: Mapping[str, str] = os.environ) -> ArtifactStore:
    """The store for ``uri`` with endpoint, credentials, TLS, region, retries and deadline taken from ``env``."""
    if not str(uri).startswith("s3://"):
        return open_store(uri)
    bucket, prefix = parse_s3_uri(str(uri))
    host, secure = endpoint_from_env(env)
    access_key = _first(env, ACCESS_KEY_VARS, "the access key")
    secret_key = _first(env, SECRET_KEY_VARS, "the secret key")
    numbers = ((ATTEMPTS_VAR, int, 5), (DELAY_VAR, float, 0.5), (DEADLINE_VAR, float, 60.0))
    attempts, delay_s, deadline_s = (_setting(env, *n) for n in numbers)
    retry = RetryPolicy(attempts=attempts, base_delay_s=delay_s, deadline_s=deadline_s)

    def client(timeout: urllib3.Timeout) -> Minio:
        ca = env.get("SSL_CERT_FILE") or certifi.where()  # retries=False: the store's RetryPolicy is the one loop
        http = urllib3.PoolManager(timeout=timeout, maxsize=10, retries=False, cert_reqs="CERT_REQUIRED", ca_certs=ca)
        token, region = env.get(SESSION_TOKEN_VAR) or None, env.get(REGION_VAR) or None
        return Minio(host, access_key, secret_key, token, secure, region, http_client=http)

    return S3Store(client(CONTROL_TIMEOUT), bucket, prefix, transfer_client=client(TRANSFER_TIMEOUT), retry=retry)
