"""Artifact store: a local directory (embedded default) or S3-compatible object storage via the minio SDK.

    store = store_from_env("s3://mlpipeline/hybridmi")   # stages: endpoint/credentials from env
    store = open_store("/data/artifacts")                # or file:///data/artifacts
    store.put_dir(out_dir, "runs/r1/train")              # files first, MANIFEST.json last
    store.get_dir("runs/r1/train", local_dir)            # verifies every sha256

See ``base.py`` for the on-store layout and the atomicity argument.
"""
from hybridmi.store.artifacts import CheckpointSync, dataset_key, publish_dataset
from hybridmi.store.base import ArtifactStore
from hybridmi.store.manifest import (
    ArtifactNotFound,
    ChecksumMismatch,
    FileEntry,
    Manifest,
    StoreAuthError,
    StoreError,
    StoreUnavailable,
)
from hybridmi.store.local import LocalStore
from hybridmi.store.retry import RetryPolicy
from hybridmi.store.s3 import S3Store
from hybridmi.store.uri import StoreConfigError, open_store, parse_s3_uri, store_from_env

__all__ = [
    "ArtifactNotFound", "ArtifactStore", "CheckpointSync", "ChecksumMismatch", "FileEntry", "LocalStore", "Manifest",
    "RetryPolicy", "S3Store", "StoreAuthError", "StoreConfigError", "StoreError", "StoreUnavailable", "dataset_key",
    "open_store", "parse_s3_uri", "publish_dataset", "store_from_env",
]
