"""FID with pytorch-fid's InceptionV3 (pool3, 2048-d), built WITHOUT its download call: weights come from
torch.hub's cache or an explicit path (made by ``hybridmi fid-weights``, sha256 recorded in ``<file>.json``)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
from torch import nn

from hybridmi.runtime import atomic_write_bytes, compute_policy

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
DIMS = 2048
MAKE_WEIGHTS = "hybridmi fid-weights"  # the command that writes the weights file (bash scripts/setup.sh runs it)


class FIDInceptionV3(nn.Module):
    """x (B, 3, H, W) in [0, 1] → pool3 (B, 2048), resized and scaled inside as pytorch-fid's InceptionV3."""

    def __init__(self) -> None:
        super().__init__()
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
        net.Mixed_5b = FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = FIDInceptionE_1(1280)
        net.Mixed_7c = FIDInceptionE_2(2048)
        self.net = net  # holds the weights under the names of the released state dict
        self.weights_sha256 = ""  # content hash of the loaded weights file (keys cached statistics)
        self.weights_record: dict[str, Any] | None = None  # the file's conversion record, when it has one
        self.channels_last = False  # weights and inputs in channels_last (same fp32 arithmetic, faster on oneDNN)

    def use_channels_last(self, on: bool = True) -> FIDInceptionV3:
        """Weights (and, in forward, inputs) in channels_last memory format when ``on``; NCHW otherwise."""
        self.channels_last = on
        return self.to(memory_format=torch.channels_last if on else torch.contiguous_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
        return self.pool3(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, 299, 299) in [−1, 1] → pool3 features (B, 2048): the network without resize and scaling."""
        n = self.net
        x = F.max_pool2d(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))), kernel_size=3, stride=2)
        x = F.max_pool2d(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(n, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)  # B x 2048


def default_weights_path() -> Path:
    """Where torch.hub (and pytorch-fid) keep the weights: $TORCH_HOME/hub/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def record_path(weights_path: str | Path) -> Path:
    """The conversion record beside a weights file: ``<file>.json`` (sha256, source, feature check)."""
    return Path(f"{weights_path}.json")


def read_record(weights_path: str | Path) -> dict[str, Any] | None:
    """The weights file's conversion record, or None when it has none (e.g. a file copied by hand)."""
    path = record_path(weights_path)
    return json.loads(path.read_text()) if path.is_file() else None


def load_inception(
    *, weights_path: str | Path | None = None, device: torch.device | str, channels_last: bool | str = "auto"
) -> FIDInceptionV3:
    """The FID Inception in eval mode, fp32, weights from ``weights_path`` or torch.hub's cache, checked by its
    record; memory layout from ``compute_policy("inception", …)`` ("auto": the one measured faster on the device)."""
    path = Path(weights_path).expanduser() if weights_path is not None else default_weights_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"FID Inception weights not found: {path} (make them with `{MAKE_WEIGHTS}`, which `bash scripts/setup.sh` "
            f"runs; or set fid.weights to a converted file)"
        )
    blob = path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    record = read_record(path)
    if record is not None and record.get("sha256") != digest:
        raise ValueError(
            f"checksum mismatch: {path} has sha256 {digest[:16]}…, its record {record_path(path)} says "
            f"{str(record.get('sha256'))[:16]}…; rerun `{MAKE_WEIGHTS}`"
        )
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    model = FIDInceptionV3()
    try:
        model.net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} is not a pytorch-fid Inception state dict: {str(exc).splitlines()[0]}") from None
    model.weights_sha256, model.weights_record = digest, record
    device = torch.device(device)
    policy = compute_policy("inception", device, precision="fp32", channels_last=channels_last)
    return model.requires_grad_(False).to(device).use_channels_last(policy.channels_last).eval()


def uint8_batches(images: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    """uint8 images (N, 3, H, W) → float batches in [0, 1], one at a time (never the whole set as float)."""
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size].float().div_(255.0)


@torch.no_grad()
def activation_statistics(images: Iterable[torch.Tensor], model: FIDInceptionV3) -> tuple[np.ndarray, np.ndarray]:
    """Mean (2048,) and covariance (2048, 2048, N − 1 as numpy.cov) of pool3 features over batches (B, 3, H, W)
    in [0, 1]; float64 sums on the model's device, so memory does not grow with the number of images."""
    device = next(model.parameters()).device
    total = torch.zeros(DIMS, dtype=torch.float64, device=device)
    outer = torch.zeros(DIMS, DIMS, dtype=torch.float64, device=device)
    count = 0
    for batch in images:
        if batch.dim() != 4 or batch.shape[1] != 3 or not batch.is_floating_point():
            raise ValueError(
                f"FID batches must be float (B, 3, H, W) in [0, 1], got {batch.dtype} {tuple(batch.shape)}"
            )
        feats = model(batch.to(device, torch.float32)).double()  # B x 2048
        total += feats.sum(0)
        outer += feats.T @ feats
        count += len(feats)
    if count < 2:
        raise ValueError(f"FID statistics need at least 2 images, got {count}")
    mu = total / count
    sigma = (outer - count * torch.outer(mu, mu)) / (count - 1)
    return mu.cpu().numpy(), sigma.cpu().numpy()


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """d² = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2})  (pytorch-fid's calculate_frechet_distance).

    Tr (Σ1 Σ2)^{1/2} = Σ sqrt(eigenvalues of the PSD Σ1^{1/2} Σ2 Σ1^{1/2}), which is similar to Σ1 Σ2: two symmetric
    eigendecompositions instead of scipy's sqrtm (same number, faster, no imaginary parts).
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(
            f"FID statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    s1, s2 = (torch.from_numpy(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    w, u = torch.linalg.eigh((s1 + s1.T) / 2)
    root = (u * w.clamp(min=0).sqrt()) @ u.T  # Σ1^{1/2}
    m = root @ s2 @ root
    tr_covmean = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum().item()
    diff = mu1.astype(np.float64) - mu2.astype(np.float64)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def reference_subset(n: int, num: int, *, seed: int) -> torch.Tensor | None:
    """Sorted indices of ``num`` of n images drawn from ``seed`` (not the first ``num``: splits stored class by
    class would bias the reference); None (all n) when num is 0 or ≥ n."""
    if num < 0:
        raise ValueError(f"reference subset size {num} is negative")
    if num == 0 or num >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:num].sort().values


def reference_statistics(
    images: torch.Tensor,
    *,
    checksum: str,
    model: FIDInceptionV3,
    cache_dir: str | Path,
    batch_size: int,
    num: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """FID statistics of a uint8 split (N, 3, H, W) or of its ``reference_subset(num, seed)``, cached in
    ``cache_dir`` as ``fid-<checksum>-<weights sha256>-<all | n<num>s<seed>>.npz``."""
    subset = reference_subset(len(images), num, seed=seed)
    tag = "all" if subset is None else f"n{len(subset)}s{seed}"
    path = Path(cache_dir).expanduser() / f"fid-{checksum[:32]}-{model.weights_sha256[:16] or 'unhashed'}-{tag}.npz"
    chosen = images if subset is None else images[subset]
    if path.is_file():
        with np.load(path) as cached:
            if int(cached["count"]) == len(chosen):
                return cached["mu"], cached["sigma"]
    mu, sigma = activation_statistics(uint8_batches(chosen, batch_size), model)
    buffer = io.BytesIO()
    np.savez(buffer, mu=mu, sigma=sigma, count=np.int64(len(chosen)))
    atomic_write_bytes(path, buffer.getvalue())
    return mu, sigma
