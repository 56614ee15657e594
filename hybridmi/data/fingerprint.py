"""A content fingerprint of a configured data source: what it decodes to, known without decoding it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hybridmi.config import DataConfig
from hybridmi.data.prepare import DECODER_VERSION, source_files, synthetic_parameters
from hybridmi.runtime import sha256_file


def source_fingerprint(cfg: DataConfig) -> str:
    """64 hex characters over the source's kind, decoder version and file contents (or synthetic parameters)."""
    description: dict[str, Any] = {"kind": cfg.source, "decoder": DECODER_VERSION}
    if cfg.source == "synthetic":
        description.update(synthetic_parameters(cfg))
    else:
        base, files = source_files(cfg)
        description["files"] = [[p.relative_to(base).as_posix(), sha256_file(p)] for p in files]
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
