"""A trained autoencoder as one self-describing file: constructor arguments, weights and caller extras.

    {"format": 1, "kind": "hybridmi-autoencoder", "init_args": {...}, "state_dict": {...}, **extra}

Loaded with ``torch.load(weights_only=True)``, so extras must be plain data (numbers, strings, lists,
dicts, tensors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hybridmi.models.autoencoder import Autoencoder
from hybridmi.runtime import atomic_torch_save

FORMAT = 1
KIND = "hybridmi-autoencoder"
_RESERVED = ("format", "kind", "init_args", "state_dict")


def save_autoencoder(model: Autoencoder, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write the model (weights moved to CPU) atomically to ``path``; returns the path."""
    extra = dict(extra or {})
    clash = [key for key in _RESERVED if key in extra]
    if clash:
        raise ValueError(f"save_autoencoder extra keys {clash} clash with the reserved keys {list(_RESERVED)}")
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    payload = {"format": FORMAT, "kind": KIND, "init_args": dict(model.init_args), "state_dict": state, **extra}
    return atomic_torch_save(payload, path)


def read_autoencoder_file(path: str | Path, *, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The checked payload dict of a saved autoencoder (tensors on ``device``); clear errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"autoencoder file {path} does not exist")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise ValueError(
            f"{path} is not a readable torch file: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("kind") != KIND:
        kind = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} holds {kind!r}, not a {KIND!r}")
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} has autoencoder format {payload.get('format')!r}; this code reads format {FORMAT}")
    return payload


def load_autoencoder(path: str | Path, *, device: str | torch.device = "cpu") -> Autoencoder:
    """Rebuild the autoencoder saved at ``path`` on ``device``, in eval mode."""
    payload = read_autoencoder_file(path, device=device)
    model = Autoencoder(**payload["init_args"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
