"""Process-wide helpers with one home each: seeding, device choice, precision, logging, JSON output."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

import hybridmi
from hybridmi.errors import UsageError

log = logging.getLogger("hybridmi")
_stop = threading.Event()  # SIGTERM arrived while a training loop could stop at a step boundary
_stoppable = threading.Event()  # a training loop is running and checks stop_requested() after every step


@contextlib.contextmanager
def sigterm_handling() -> Iterator[None]:
    """Within the block (main thread only): SIGTERM stops a running trainer after its step (it checkpoints and raises
    ``Preempted``); outside a trainer it raises SystemExit(143) so ``finally`` blocks run. A second one kills."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if not _stoppable.is_set():
            raise SystemExit(128 + signum)
        log.warning("SIGTERM: finishing the step in flight, then checkpointing and stopping")
        _stop.set()

    _stop.clear()
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop.clear()  # a request belongs to the block it arrived in


@contextlib.contextmanager
def stoppable() -> Iterator[None]:
    """Marks a training loop that checks ``stop_requested()`` after every step (SIGTERM then sets the flag)."""
    _stoppable.set()
    try:
        yield
    finally:
        _stoppable.clear()


def stop_requested() -> bool:
    """Whether SIGTERM asked the running trainer to checkpoint and stop."""
    return _stop.is_set()


def setup_logging(level: int | str = logging.INFO, *, prefix: str = "") -> None:
    """Configure the root logger once, at an entry point; ``prefix`` starts every line (e.g. "[rank 1] ")."""
    logging.basicConfig(level=level, format=f"{prefix}%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def choose_device(spec: str = "auto") -> torch.device:
    """'auto' → cuda when available, else cpu; an explicit cuda device that is absent is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {spec!r} requested but CUDA is not available")
    return device


# Memory layout that measured faster, per (device kind, precision) and network (bench/precision.py, bench/RESULTS.md).
# CPU fp32: channels_last speeds up the autoencoder's and the Inception's oneDNN convolutions (1.3x each); the latent
# UNet (16x16, attention, GroupNorm) gains nothing. CPU bf16 (AVX512-BF16): channels_last adds ~8 % to the autoencoder
# (1.9x over fp32 NCHW against 1.8x) and costs the UNet a quarter of its bf16 speed. CUDA: channels_last everywhere.
CHANNELS_LAST = {
    ("cpu", "fp32"): {"autoencoder": True, "unet": False, "inception": True},
    ("cpu", "bf16"): {"autoencoder": True, "unet": False, "inception": False},
    ("cuda", "fp32"): {"autoencoder": True, "unet": True, "inception": True},
    ("cuda", "bf16"): {"autoencoder": True, "unet": True, "inception": True},
}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: CUDA, or a CPU with AVX512-BF16 or AMX-BF16 (not emulated)."""
    if device.type == "cuda":
        return True
    flags = torch._C._cpu._get_cpu_capability()
    return device.type == "cpu" and bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


@dataclasses.dataclass(frozen=True)
class ComputePolicy:
    """How one network computes on one device: autocast dtype (None = fp32) and memory layout."""

    dtype: torch.dtype | None
    channels_last: bool

    def describe(self) -> dict[str, str | bool]:
        """For run metadata and the report: {"precision": "bf16" | "fp32", "channels_last": bool}."""
        return {"precision": "bf16" if self.dtype is torch.bfloat16 else "fp32", "channels_last": self.channels_last}

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in this policy's memory layout (4-D tensors only change)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def compute_policy(
    network: str, device: torch.device, *, precision: str = "auto", channels_last: bool | str = "auto"
) -> ComputePolicy:
    """The policy for ``network`` ("autoencoder" | "unet" | "inception") on ``device``: precision "auto" is bf16
    autocast where the device has native bf16 (fp32 elsewhere), "fp32"/"bf16" force; layout "auto" takes
    ``CHANNELS_LAST``'s measured choice, True/False force. Callers that must stay fp32 pass precision="fp32"."""
    bf16 = precision == "bf16" or (precision == "auto" and native_bf16(device))
    measured = CHANNELS_LAST.get((device.type, "bf16" if bf16 else "fp32"), {})
    layout = measured.get(network, False) if channels_last == "auto" else channels_last
    return ComputePolicy(dtype=torch.bfloat16 if bf16 else None, channels_last=bool(layout))


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; a no-op when dtype is None."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def rng_state() -> dict[str, Any]:
    """Every global RNG state, for checkpoints: tensors and plain numbers only (``torch.load(weights_only=True)``)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)}
    numpy |= {"has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    python = {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss}
    state: dict[str, Any] = {"python": python, "numpy": numpy, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    python, numpy = state["python"], state["numpy"]
    random.setstate((python["version"], tuple(python["words"].tolist()), python["gauss"]))
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path``, fsynced and renamed over it on success (removed on error)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save to ``path`` atomically (temporary file + rename)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a JSON document atomically (sorted keys, trailing newline)."""
    return atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    version = hybridmi.__version__
    git = ["git", "rev-parse", "--short", "HEAD"]
    try:
        sha = subprocess.run(git, cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{version}+{sha}" if sha else version
