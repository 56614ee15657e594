"""A trained autoencoder as one self-describing file: constructor arguments, weights and caller extras."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hybridmi.errors import MissingInput, UsageError
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


def load_autoencoder(path: str | Path, *, device: str | torch.device = "cpu") -> Autoencoder:
    """Rebuild the autoencoder saved at ``path`` on ``device``, in eval mode; clear errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"autoencoder file {path} does not exist")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise UsageError(
            f"{path} is not a readable torch file: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("kind") != KIND:
        kind = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise UsageError(f"{path} holds {kind!r}, not a {KIND!r}")
    if payload.get("format") != FORMAT:
        raise UsageError(f"{path} has autoencoder format {payload.get('format')!r}; this code reads format {FORMAT}")
    model = Autoencoder(**payload["init_args"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
