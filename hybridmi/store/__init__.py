"""Artifact store: a local directory (embedded default) or S3-compatible object storage via the minio SDK.

    store = store_from_env("s3://mlpipeline/hybridmi")   # stages: endpoint/credentials from env
    store = open_store("/data/artifacts")                # or file:///data/artifacts
    store.check_access(write=True)                       # fail fast, before any work
    store.put_dir(out_dir, "runs/r1/train")              # files first, MANIFEST.json last (conditionally)
    store.get_dir("runs/r1/train", local_dir)            # verifies every sha256

See ``base.py`` for the on-store layout, ``publish.py`` for what holds under concurrent writers,
``datasets.py`` for content-addressed data sets and ``checkpoints.py`` for mirrored training checkpoints.
"""

from hybridmi.store.base import ArtifactStore
from hybridmi.store.checkpoints import CheckpointSync
from hybridmi.store.datasets import PublishedDataset, dataset_key, find_by_source, publish_dataset, record_source
from hybridmi.store.local import LocalStore
from hybridmi.store.manifest import (
    ArtifactNotFound,
    ChecksumMismatch,
    FileEntry,
    Manifest,
    PublishConflict,
    StoreAuthError,
    StoreError,
    StoreUnavailable,
)
from hybridmi.store.retry import RetryPolicy
from hybridmi.store.s3 import S3Store
from hybridmi.store.uri import StoreConfigError, open_store, parse_s3_uri, store_from_env

__all__ = [
    "ArtifactNotFound",
    "ArtifactStore",
    "CheckpointSync",
    "ChecksumMismatch",
    "FileEntry",
    "LocalStore",
    "Manifest",
    "PublishConflict",
    "PublishedDataset",
    "RetryPolicy",
    "S3Store",
    "StoreAuthError",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailable",
    "dataset_key",
    "find_by_source",
    "open_store",
    "parse_s3_uri",
    "publish_dataset",
    "record_source",
    "store_from_env",
]
