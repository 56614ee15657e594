"""S3-compatible backend over ready ``minio.Minio`` clients (MinIO, SeaweedFS, AWS S3, moto)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError

from hybridmi.errors import UsageError
from hybridmi.store.base import PROBE_DIR, ArtifactStore, write_hashed
from hybridmi.store.manifest import (
    ObjectMissing,
    PreconditionFailed,
    StoreAuthError,
    StoreError,
    StoreIOError,
    StoreUnavailable,
)

T = TypeVar("T")
log = logging.getLogger(__name__)
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's smallest multipart part (bytes)
PROBE_DEADLINE_S = 15.0  # the access probe gives up this soon: a stage fails fast on a dead or silent endpoint
AUTH_CODES = set("InvalidAccessKeyId SignatureDoesNotMatch AccessDenied InvalidToken ExpiredToken".split())
AUTH_CODES |= {"InvalidClientTokenId", "AllAccessDisabled", "AuthorizationHeaderMalformed"}
TRANSIENT_CODES = set("InternalError SlowDown ServiceUnavailable RequestTimeout OperationAborted Throttling".split())
# A conditional write that lost: 412 PreconditionFailed, or 409 when another conditional write of the key is in flight.
PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries, min(base_delay_s * 2**(k-1), max_delay_s) seconds apart after try k; no try
    starts once ``deadline_s`` seconds have passed since the first (a try in flight is bounded by its timeouts)."""

    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    deadline_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or min(self.base_delay_s, self.max_delay_s, self.deadline_s) < 0:
            raise UsageError(f"retry policy {self} needs attempts >= 1 and delays and deadline >= 0 seconds")

    def delay_s(self, attempt: int) -> float:
        return min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s)


class TransientError(Exception):
    """'This may work if tried again', with a short reason; ``attempts``: how many tries it took to give up."""

    attempts = 1


def call_with_retry(f: Callable[[], T], *, policy: RetryPolicy, what: str, sleep=time.sleep, clock=time.monotonic) -> T:
    """``f()`` until it returns or raises something other than TransientError, whose last one is raised once
    the attempts or the deadline are spent; ``what`` names the operation in log lines."""
    deadline = clock() + policy.deadline_s
    for attempt in range(1, policy.attempts + 1):
        try:
            return f()
        except TransientError as exc:
            delay = policy.delay_s(attempt)
            if attempt == policy.attempts or clock() + delay >= deadline:
                exc.attempts = attempt
                raise
            log.warning("%s failed (%s); retry %d/%d in %.2f s", what, exc, attempt, policy.attempts - 1, delay)
            sleep(delay)


class S3Store(ArtifactStore):
    """Artifacts under ``s3://bucket/prefix``. ``client`` makes the small requests (probes, documents, lists);
    ``transfer_client`` (default: ``client``) moves artifact files, split into ``part_size``-byte parts (>= 5 MiB)."""

    def __init__(
        self,
        client: Minio,
        bucket: str,
        prefix: str = "",
        *,
        transfer_client: Minio | None = None,
        retry: RetryPolicy = RetryPolicy(),
        part_size: int = 16 * 1024 * 1024,
        conditional_writes: bool | None = None,
    ) -> None:
        if not bucket:
            raise UsageError("bucket name is empty")
        if part_size < MIN_PART_SIZE:
            raise UsageError(f"part size {part_size} bytes is below the S3 minimum of {MIN_PART_SIZE} bytes (5 MiB)")
        self._client, self._transfer = client, transfer_client or client
        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.retry, self.part_size = retry, part_size
        base = getattr(client, "_base_url", None)  # the SDK's scheme://host:port, for messages
        self.endpoint = f"{'https' if base.is_https else 'http'}://{base.host}" if base else "<unknown endpoint>"
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._conditional = conditional_writes  # None: probe the endpoint on first use

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r} at {self.endpoint!r})"

    def _describe(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.prefix + name} at {self.endpoint}"

    def check_access(self, *, write: bool = False) -> None:
        """As the base's, with a missing bucket a StoreError, within about PROBE_DEADLINE_S plus one read timeout."""
        probe = replace(self.retry, deadline_s=min(self.retry.deadline_s, PROBE_DEADLINE_S))
        if not self._guard("check bucket", "", lambda: self._client.bucket_exists(self.bucket), retry=probe):
            raise StoreError(f"bucket {self.bucket!r} does not exist at {self.endpoint}")
        super().check_access(write=write)

    @property
    def conditional_writes(self) -> bool:
        if self._conditional is None:
            self._conditional = self._probe_conditional_writes()
            how = "honours" if self._conditional else "ignores (concurrent publishes are checked by reading back)"
            log.info("%s %s conditional writes", self.endpoint, how)
        return self._conditional

    def _probe_conditional_writes(self) -> bool:
        name = f"{PROBE_DIR}/conditional-{uuid.uuid4().hex}"
        self._upload_bytes(name, b"1")
        try:
            for condition in ({"If-None-Match": "*"}, {"If-Match": f'"{"0" * 32}"'}):  # present; another ETag
                with contextlib.suppress(PreconditionFailed):
                    self._guard("probe", name, lambda: self._put(name, b"2", condition))
                    return False  # accepted: the endpoint ignored the condition
            return True
        except (StoreAuthError, StoreUnavailable):
            raise
        except StoreError:  # e.g. 501 NotImplemented for the header
            return False
        finally:
            self._delete_names([name])

    def _guard(self, action: str, name: str, fn: Callable[[], T], *, retry: RetryPolicy | None = None) -> T:
        where = self._describe(name)

        def attempt() -> T:
            try:
                return fn()
            except S3Error as exc:
                raise self._classify(exc, action, name) from None
            except (ServerError, InvalidResponseError) as exc:
                code = getattr(exc, "status_code", None) or getattr(exc, "_code", 0)
                if isinstance(code, int) and code >= 500:
                    raise TransientError(f"HTTP {code}") from None
                raise StoreError(f"{action} {where} failed: unexpected response (HTTP {code})") from None
            except urllib3.exceptions.HTTPError as exc:
                reason = getattr(exc, "reason", None) or exc  # MaxRetryError wraps the underlying error
                raise TransientError(f"{type(reason).__name__}: {reason}"[:300]) from None
            except OSError as exc:  # urllib3 wraps socket errors: this is a local file (a full disk, say)
                raise StoreIOError(f"{action} {where} failed: {exc}") from None

        retry = retry or self.retry
        try:
            return call_with_retry(attempt, policy=retry, what=f"{action} {where}")
        except TransientError as exc:
            spent = f"after {exc.attempts} attempts within the {retry.deadline_s:g} s deadline ({exc})"
            raise StoreUnavailable(f"object storage unreachable: {action} {where} failed {spent}") from None

    def _classify(self, exc: S3Error, action: str, name: str) -> Exception:
        code = exc.code or ""
        if code == "NoSuchKey":
            return ObjectMissing(name)
        if code in PRECONDITION_CODES:
            return PreconditionFailed(name)
        if code == "NoSuchBucket":
            return StoreError(f"bucket {self.bucket!r} does not exist at {self.endpoint} ({action} {name})")
        if code in AUTH_CODES:
            how = f"the credentials for bucket {self.bucket!r} ({code}) while trying to {action} {self._describe(name)}"
            return StoreAuthError(f"{self.endpoint} rejected {how}")
        if code in TRANSIENT_CODES:
            return TransientError(code)
        return StoreError(f"{action} {self._describe(name)} failed: {code}: {exc.message}")

    def _put(self, name: str, data: bytes, headers: dict[str, str]) -> None:
        """One PUT of a small object with extra headers (conditions); the SDK's public put_object takes none."""
        headers = {"Content-Type": "application/json", "x-amz-meta-sha256": hashlib.sha256(data).hexdigest(), **headers}
        self._client._put_object(self.bucket, self.prefix + name, data, headers=headers)

    def _upload(self, name: str, src: Path, *, size: int, sha256: str) -> None:
        def put() -> None:
            with open(src, "rb") as fh:  # reopened on every attempt so a retry starts from byte 0
                meta, part = {"sha256": sha256}, self.part_size
                self._transfer.put_object(self.bucket, self.prefix + name, fh, size, metadata=meta, part_size=part)

        self._guard(f"upload {src} to", name, put)

    def _upload_bytes(self, name: str, data: bytes) -> None:
        self._guard("upload", name, lambda: self._put(name, data, {}))

    def _write_conditional(self, name: str, data: bytes, *, tag: str | None) -> None:
        condition = {"If-None-Match": "*"} if tag is None else {"If-Match": f'"{tag}"'}
        self._guard("upload", name, lambda: self._put(name, data, condition))

    def _get(self, name: str, client: Minio, consume: Callable[[urllib3.BaseHTTPResponse], T]) -> T:
        response = client.get_object(self.bucket, self.prefix + name)
        try:
            return consume(response)
        finally:
            response.close()
            response.release_conn()

    def _download(self, name: str, dest: Path) -> str:
        get = lambda response: write_hashed(response.stream(1 << 20), dest)  # dest truncated on every attempt
        return self._guard(f"download {dest} from", name, lambda: self._get(name, self._transfer, get))

    def _read_tagged(self, name: str) -> tuple[bytes, str]:
        tagged = lambda r: (r.read(), r.headers.get("ETag", "").strip('"'))
        return self._guard("read", name, lambda: self._get(name, self._client, tagged))

    def _list_objects(self, prefix: str) -> Iterator[tuple[str, float]]:
        listing = lambda: list(self._client.list_objects(self.bucket, self.prefix + prefix, recursive=True))
        found = self._guard("list", prefix, listing)
        stamp = lambda o: o.last_modified.timestamp() if o.last_modified else 0.0
        return iter(sorted((o.object_name[len(self.prefix) :], stamp(o)) for o in found))

    def _delete_names(self, names: Iterable[str]) -> None:
        objects = [self.prefix + n for n in names]
        if not objects:
            return
        delete = lambda: list(self._client.remove_objects(self.bucket, [DeleteObject(o) for o in objects]))
        if errors := self._guard("delete", objects[0][len(self.prefix) :], delete):
            first = f"s3://{self.bucket}/{errors[0].name}: {errors[0].code}"
            raise StoreError(f"could not delete {len(errors)} objects at {self.endpoint}, e.g. {first}")
