"""Artifact store: a local directory (embedded default) or S3-compatible object storage via the minio SDK."""

from hybridmi.store.base import ArtifactStore
from hybridmi.store.checkpoints import CheckpointSync
from hybridmi.store.datasets import PublishedDataset, dataset_key, find_by_source, publish_dataset, record_source
from hybridmi.store.local import LocalStore
from hybridmi.store.manifest import (
    ArtifactNotFound,
    ChecksumMismatch,
    PublishConflict,
    StoreAuthError,
    StoreError,
    StoreIOError,
    StoreUnavailable,
)
from hybridmi.store.s3 import RetryPolicy, S3Store
from hybridmi.store.uri import StoreConfigError, open_store, parse_s3_uri, store_from_env

__all__ = ["ArtifactStore", "CheckpointSync", "LocalStore", "S3Store", "RetryPolicy", "open_store", "store_from_env"]
__all__ += ["PublishedDataset", "dataset_key", "find_by_source", "publish_dataset", "record_source", "parse_s3_uri"]
__all__ += ["ArtifactNotFound", "ChecksumMismatch", "PublishConflict", "StoreAuthError", "StoreConfigError"]
__all__ += ["StoreError", "StoreIOError", "StoreUnavailable"]
