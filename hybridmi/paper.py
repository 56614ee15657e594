"""The paper's Table 1 (CIFAR-10 / CIFAR-100): MSE (Σ over 3072 values), FID, linear accuracy (%)."""

from __future__ import annotations

# method -> dataset -> metric -> value; None where the paper reports "-".
TABLE1: dict[str, dict[str, dict[str, float | None]]] = {
    "Hybrid": {"cifar10": {"mse": 2.6, "fid": 34.6, "acc": 77.6}, "cifar100": {"mse": 3.3, "fid": 41.2, "acc": 46.7}},
    "MoCo-v2": {
        "cifar10": {"mse": None, "fid": None, "acc": 78.3},
        "cifar100": {"mse": None, "fid": None, "acc": 49.04},
    },
    "NVAE": {"cifar10": {"mse": 0.25, "fid": 36.4, "acc": 18.8}, "cifar100": {"mse": 0.53, "fid": 42.5, "acc": 4.1}},
    "DDIM": {"cifar10": {"mse": 2.5, "fid": 3.2, "acc": 22.5}, "cifar100": {"mse": 3.2, "fid": 13.3, "acc": 2.2}},
    "BigGAN": {"cifar10": {"mse": None, "fid": 18.6, "acc": 70.8}, "cifar100": {"mse": None, "fid": 22.2, "acc": 43.3}},
}


def paper_dataset(source: str) -> str | None:
    """The Table 1 column group a data source compares with (the JPEG folder copy of CIFAR-10 counts as cifar10)."""
    return {"cifar10": "cifar10", "cifar100": "cifar100", "folder": "cifar10"}.get(source)
