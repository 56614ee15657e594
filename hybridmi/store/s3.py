"""S3-compatible backend over a ready ``minio.Minio`` client (MinIO, SeaweedFS, AWS S3, moto).

Conditional writes (``If-None-Match: *`` / ``If-Match: <etag>`` on PutObject) are sent as real request
headers through the SDK's ``_put_object`` (``put_object`` would turn them into ``x-amz-meta-*`` user
metadata). Whether an endpoint honours them is found out once per store by a probe object: it is
written, then rewritten under both conditions, each of which must be refused with 412; an endpoint that
accepts either (it ignores the header) or rejects the header as not implemented gets the read-back
fallback described in ``base.py``. AWS S3 and MinIO honour both headers. moto 5.2.5 (checked in its
source, ``moto/s3/responses.py`` ``put_object``: ``If-Match`` against the ETag, ``If-None-Match: *``
against existence, ``PreconditionFailed`` otherwise) honours both too, but checks and writes in two
steps without a lock, so under moto two racing writers can, rarely, both see their commit accepted;
the artifact stays whole either way.

Every request goes through one guard that maps the SDK's errors: transient ones (connection
refused/reset, timeouts, 5xx, SlowDown) are retried with exponential backoff and finally raise
``StoreUnavailable`` naming the endpoint and object; rejected credentials raise ``StoreAuthError``
at once (retrying cannot help). Messages and ``repr`` name the endpoint and bucket, never credentials.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError

from hybridmi.store.base import PROBE_DIR, ArtifactStore
from hybridmi.store.manifest import ObjectMissing, PreconditionFailed, StoreAuthError, StoreError, StoreUnavailable
from hybridmi.store.retry import RetryPolicy, TransientError, call_with_retry

T = TypeVar("T")
log = logging.getLogger(__name__)
_CHUNK = 1 << 20
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's smallest multipart part (bytes)
AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "InvalidClientTokenId",
        "AllAccessDisabled",
        "AuthorizationHeaderMalformed",
    }
)
TRANSIENT_CODES = frozenset(
    {"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout", "OperationAborted", "Throttling"}
)
# A conditional write that lost: 412 PreconditionFailed, or 409 when another conditional write of the key is in flight.
PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


def endpoint_of(client: Minio) -> str:
    """``scheme://host:port`` of a Minio client, for messages (the SDK keeps it in ``_base_url``)."""
    base = getattr(client, "_base_url", None)
    if base is None:
        return "<unknown endpoint>"
    return f"{'https' if base.is_https else 'http'}://{base.host}"


def _short_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc  # MaxRetryError wraps the underlying error
    return f"{type(reason).__name__}: {reason}"[:300]


class S3Store(ArtifactStore):
    """Artifacts under ``s3://bucket/prefix``; ``part_size`` (bytes, >= 5 MiB) splits large files into a multipart upload."""

    def __init__(
        self,
        client: Minio,
        bucket: str,
        prefix: str = "",
        *,
        retry: RetryPolicy = RetryPolicy(),
        part_size: int = 16 * 1024 * 1024,
        prune_grace_s: float = ArtifactStore.prune_grace_s,
        conditional_writes: bool | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("bucket name is empty")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part size {part_size} bytes is below the S3 minimum of {MIN_PART_SIZE} bytes (5 MiB)")
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.retry = retry
        self.part_size = part_size
        self.endpoint = endpoint_of(client)
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.prune_grace_s = prune_grace_s
        self._conditional = conditional_writes  # None: probe the endpoint on first use

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r} at {self.endpoint!r})"

    def _object(self, name: str) -> str:
        return self.prefix + name

    def _describe(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._object(name)} at {self.endpoint}"

    def check_access(self, *, write: bool = False) -> None:
        """Fail fast: StoreAuthError for rejected credentials, StoreError when the bucket is missing,
        StoreUnavailable when the endpoint cannot be reached; ``write`` also probes a write and a delete."""
        if not self._guard("check bucket", "", lambda: self._client.bucket_exists(self.bucket)):
            raise StoreError(f"bucket {self.bucket!r} does not exist at {self.endpoint}")
        super().check_access(write=write)

    @property
    def conditional_writes(self) -> bool:
        if self._conditional is None:
            self._conditional = self._probe_conditional_writes()
            log.info(
                "%s %s conditional writes%s",
                self.endpoint,
                "honours" if self._conditional else "ignores",
                "" if self._conditional else "; concurrent publishes are checked by reading back",
            )
        return self._conditional

    def _probe_conditional_writes(self) -> bool:
        name = f"{PROBE_DIR}/conditional-{uuid.uuid4().hex}"
        self._upload_bytes(name, b"1")
        try:
            for condition in ({"If-None-Match": "*"}, {"If-Match": f'"{"0" * 32}"'}):  # present; another ETag
                try:
                    self._guard(
                        "probe",
                        name,
                        lambda: self._client._put_object(self.bucket, self._object(name), b"2", headers=condition),
                    )
                    return False  # accepted: the endpoint ignored the condition
                except PreconditionFailed:
                    continue
                except (StoreAuthError, StoreUnavailable):
                    raise
                except StoreError:  # e.g. 501 NotImplemented for the header
                    return False
            return True
        finally:
            self._delete_names([name])

    # -- the guard ----------------------------------------------------------------------------------
    def _guard(self, action: str, name: str, fn: Callable[[], T]) -> T:
        where = self._describe(name)

        def attempt() -> T:
            try:
                return fn()
            except S3Error as exc:
                raise self._classify(exc, action, name) from None
            except ServerError as exc:
                if exc.status_code >= 500:
                    raise TransientError(f"HTTP {exc.status_code}") from None
                raise StoreError(f"{action} {where} failed: HTTP {exc.status_code}") from None
            except InvalidResponseError as exc:
                code = getattr(exc, "_code", 0)
                if isinstance(code, int) and code >= 500:
                    raise TransientError(f"HTTP {code}") from None
                raise StoreError(f"{action} {where} failed: unexpected non-S3 response (HTTP {code})") from None
            except urllib3.exceptions.HTTPError as exc:
                raise TransientError(_short_reason(exc)) from None

        try:
            return call_with_retry(attempt, policy=self.retry, what=f"{action} {where}")
        except TransientError as exc:
            raise StoreUnavailable(
                f"object storage unreachable: {action} {where} failed after {self.retry.attempts} attempts ({exc})"
            ) from None

    def _classify(self, exc: S3Error, action: str, name: str) -> Exception:
        code = exc.code or ""
        if code == "NoSuchKey":
            return ObjectMissing(name)
        if code in PRECONDITION_CODES:
            return PreconditionFailed(name)
        if code == "NoSuchBucket":
            return StoreError(
                f"bucket {self.bucket!r} does not exist at {self.endpoint} ({action} {self._describe(name)})"
            )
        if code in AUTH_CODES:
            return StoreAuthError(
                f"{self.endpoint} rejected the credentials for bucket {self.bucket!r} ({code}) "
                f"while trying to {action} {self._describe(name)}"
            )
        if code in TRANSIENT_CODES:
            return TransientError(code)
        return StoreError(f"{action} {self._describe(name)} failed: {code}: {exc.message}")

    # -- primitives ---------------------------------------------------------------------------------
    def _upload(self, name: str, src: Path, *, size: int, sha256: str) -> None:
        def put() -> None:
            with open(src, "rb") as fh:  # reopened on every attempt so a retry starts from byte 0
                self._client.put_object(
                    self.bucket, self._object(name), fh, size, metadata={"sha256": sha256}, part_size=self.part_size
                )

        self._guard("upload", name, put)

    def _upload_bytes(self, name: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        self._guard(
            "upload",
            name,
            lambda: self._client.put_object(
                self.bucket,
                self._object(name),
                io.BytesIO(data),
                len(data),
                content_type="application/json",
                metadata={"sha256": digest},
            ),
        )

    def _download(self, name: str, dest: Path) -> str:
        def get() -> str:
            digest = hashlib.sha256()
            response = self._client.get_object(self.bucket, self._object(name))
            try:
                with open(dest, "wb") as out:  # truncated on every attempt
                    for chunk in response.stream(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            finally:
                response.close()
                response.release_conn()
            return digest.hexdigest()

        return self._guard("download", name, get)

    def _write_conditional(self, name: str, data: bytes, *, tag: str | None) -> None:
        headers = {
            "Content-Type": "application/json",
            "x-amz-meta-sha256": hashlib.sha256(data).hexdigest(),
            **({"If-None-Match": "*"} if tag is None else {"If-Match": f'"{tag}"'}),
        }
        self._guard(
            "upload", name, lambda: self._client._put_object(self.bucket, self._object(name), data, headers=headers)
        )

    def _read_tagged(self, name: str) -> tuple[bytes, str]:
        def get() -> tuple[bytes, str]:
            response = self._client.get_object(self.bucket, self._object(name))
            try:
                return response.read(), response.headers.get("ETag", "").strip('"')
            finally:
                response.close()
                response.release_conn()

        return self._guard("read", name, get)

    def _list_objects(self, prefix: str) -> Iterator[tuple[str, float]]:
        full = self._object(prefix)
        found = self._guard(
            "list",
            prefix,
            lambda: [
                (o.object_name, o.last_modified.timestamp() if o.last_modified else 0.0)
                for o in self._client.list_objects(self.bucket, prefix=full, recursive=True)
            ],
        )
        return iter(sorted((n[len(self.prefix) :], t) for n, t in found))

    def _delete_names(self, names: Iterable[str]) -> None:
        objects = [self._object(n) for n in names]
        if not objects:
            return
        errors = self._guard(
            "delete",
            objects[0][len(self.prefix) :],
            lambda: list(self._client.remove_objects(self.bucket, [DeleteObject(o) for o in objects])),
        )
        if errors:
            raise StoreError(
                f"could not delete {len(errors)} objects at {self.endpoint}, e.g. "
                f"s3://{self.bucket}/{errors[0].name}: {errors[0].code}"
            )
