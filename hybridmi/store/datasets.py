"""Content-addressed data sets: ``datasets/<checksum>``, published once however many runs race to publish it,
and found again from the source they were decoded from (``datasets/sources/<fingerprint>`` → checksum)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from hybridmi.errors import UsageError
from hybridmi.store.base import ArtifactStore
from hybridmi.store.manifest import PublishConflict

log = logging.getLogger(__name__)

_HEX = re.compile(r"^[0-9a-f]{8,128}$")


@dataclass(frozen=True)
class PublishedDataset:
    key: str  # datasets/<checksum>
    reused: bool  # True when the key was already published (by an earlier run or a concurrent writer)


def _hex(value: str, what: str) -> str:
    if not _HEX.match(value):
        raise UsageError(f"{what} {value!r} is not a lowercase hex digest")
    return value


def dataset_key(checksum: str) -> str:
    return f"datasets/{_hex(checksum, 'data set checksum')}"


def source_key(fingerprint: str) -> str:
    return f"datasets/sources/{_hex(fingerprint, 'data source fingerprint')}"


def publish_dataset(store: ArtifactStore, local_dir: str | Path, checksum: str) -> PublishedDataset:
    """Publish a prepared data set under ``datasets/<checksum>`` unless that key is already published."""
    key = dataset_key(checksum)
    if store.exists(key):
        log.info("data set %s already published; reusing it", key)
        return PublishedDataset(key, reused=True)
    try:
        store.put_dir(local_dir, key, if_absent=True)
        return PublishedDataset(key, reused=False)
    except PublishConflict:
        log.info("data set %s was published concurrently by another run; reusing that copy", key)
        return PublishedDataset(key, reused=True)


def record_source(store: ArtifactStore, fingerprint: str, checksum: str) -> None:
    """Remember that the source with ``fingerprint`` decodes to the data set ``checksum``."""
    store.put_document(source_key(fingerprint), {"checksum": checksum, "key": dataset_key(checksum)})


def find_by_source(store: ArtifactStore, fingerprint: str) -> str | None:
    """The published data set key decoded from the source with ``fingerprint``, or None."""
    if (pointer := store.get_document(source_key(fingerprint))) is None:
        return None
    if not store.exists(key := dataset_key(str(pointer.get("checksum", "")))):
        log.warning("data set %s recorded for source %s is not published (deleted?); decoding again", key, fingerprint)
        return None
    return key
