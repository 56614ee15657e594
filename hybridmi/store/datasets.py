"""Content-addressed data sets: ``datasets/<checksum>``, published once however many runs race to publish it,
and found again from the source they were decoded from (``datasets/sources/<fingerprint>`` → checksum).

The checksum key means that a published key already holds these bytes, so whichever of several
concurrent writers commits first stands and the others count as reuses (``put_dir(if_absent=True)``:
``If-None-Match: *`` on the manifest). The source pointer is one small JSON object; racing writers of it
write the same content.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from hybridmi.store.base import ArtifactStore
from hybridmi.store.manifest import PublishConflict

log = logging.getLogger(__name__)

_HEX = re.compile(r"^[0-9a-f]{8,128}$")
SOURCES = "datasets/sources"


@dataclass(frozen=True)
class PublishedDataset:
    key: str  # datasets/<checksum>
    reused: bool  # True when the key was already published (by an earlier run or a concurrent writer)


def dataset_key(checksum: str) -> str:
    if not _HEX.match(checksum):
        raise ValueError(f"data set checksum {checksum!r} is not a lowercase hex digest")
    return f"datasets/{checksum}"


def source_key(fingerprint: str) -> str:
    if not _HEX.match(fingerprint):
        raise ValueError(f"data source fingerprint {fingerprint!r} is not a lowercase hex digest")
    return f"{SOURCES}/{fingerprint}"


def publish_dataset(store: ArtifactStore, local_dir: str | Path, checksum: str) -> PublishedDataset:
    """Publish a prepared data set under ``datasets/<checksum>`` unless that key is already published."""
    key = dataset_key(checksum)
    if store.exists(key):
        log.info("data set %s already published; reusing it", key)
        return PublishedDataset(key, reused=True)
    try:
        store.put_dir(local_dir, key, if_absent=True)
    except PublishConflict:
        log.info("data set %s was published concurrently by another run; reusing that copy", key)
        return PublishedDataset(key, reused=True)
    return PublishedDataset(key, reused=False)


def record_source(store: ArtifactStore, fingerprint: str, checksum: str) -> None:
    """Remember that the source with ``fingerprint`` decodes to the data set ``checksum``."""
    store.put_document(source_key(fingerprint), {"checksum": checksum, "key": dataset_key(checksum)})


def find_by_source(store: ArtifactStore, fingerprint: str) -> str | None:
    """The published data set key decoded from the source with ``fingerprint``, or None."""
    pointer = store.get_document(source_key(fingerprint))
    if pointer is None:
        return None
    key = dataset_key(str(pointer.get("checksum", "")))
    if not store.exists(key):
        log.warning("data set %s recorded for source %s is not published (deleted?); decoding again", key, fingerprint)
        return None
    return key
