"""Files the package commands read and write: image files in, latents as .npz, images out as PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from hybridmi.errors import MissingInput, UsageError
from hybridmi.eval.samples import to_uint8
from hybridmi.package.loader import ModelPackage
from hybridmi.runtime import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SIZE = 32  # the autoencoder's input: 32x32 RGB
GRID_IMAGES = 64  # generate's grid.png shows the first 64 images
PROGRESS = dict(unit="image", mininterval=1.0, dynamic_ncols=True)  # on stderr


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """The image files among ``paths``: a file as given, a folder's *.png|jpg|jpeg|bmp|webp (recursive, sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise MissingInput(f"image file or folder {path} does not exist")
    return files


def check_images(files: Sequence[Path], *, resize: bool) -> None:
    """Every file opens as an image, and is 32x32 unless ``resize``; UsageError naming the first that is not."""
    for path in files:
        try:
            with Image.open(path) as image:  # reads the header only
                size = image.size
        except (UnidentifiedImageError, OSError) as exc:
            raise UsageError(f"{path} is not a readable image ({type(exc).__name__})") from None
        if size != (SIZE, SIZE) and not resize:
            raise UsageError(f"{path} is {size[0]}x{size[1]}, not {SIZE}x{SIZE}: pass --resize to resize images")


def read_images(files: Sequence[Path], *, resize: bool) -> torch.Tensor:
    """uint8 (N, 3, 32, 32): each file as RGB (grey, palette and alpha converted), bicubic-resized if ``resize``."""
    arrays = []
    for path in files:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        if rgb.size != (SIZE, SIZE):
            if not resize:
                raise UsageError(f"{path} is {rgb.size[0]}x{rgb.size[1]}, not {SIZE}x{SIZE}")
            rgb = rgb.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(rgb))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # NxHxWx3 → Nx3xHxW


def encode_files(package: ModelPackage, files: Sequence[Path], *, batch_size: int, resize: bool) -> torch.Tensor:
    """z (N, L, 16, 16) float32 of the image files, encoded ``batch_size`` at a time, a progress bar on stderr."""
    zs = []
    with tqdm(total=len(files), desc="encode", **PROGRESS) as bar:
        for start in range(0, len(files), batch_size):
            z, _, _ = package.encode(read_images(files[start : start + batch_size], resize=resize))
            zs.append(z.cpu())
            bar.update(len(zs[-1]))
    return torch.cat(zs)


def save_latents_npz(path: str | Path, z: torch.Tensor, *, contrastive_channels: int, files: Sequence[Path]) -> Path:
    """Write z, y = z[:, :c], yhat = z[:, c:] (float32) and the image file names as one .npz, atomically."""
    z = z.float().numpy()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        c = contrastive_channels
        np.savez(fh, z=z, y=z[:, :c], yhat=z[:, c:], files=np.array([str(f) for f in files]))
    return Path(path)


def load_latents_npz(path: str | Path, *, latent_shape: tuple[int, ...]) -> torch.Tensor:
    """z (N, L, 16, 16) float32 from an .npz holding ``z`` (or ``y`` and ``yhat``); UsageError for other shapes."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"latent file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            z = data["z"] if "z" in data else np.concatenate([data["y"], data["yhat"]], axis=1)
    except (KeyError, ValueError, OSError) as exc:
        raise UsageError(f"{path} is not an .npz with z (or y and yhat): {type(exc).__name__}") from None
    if z.ndim != 4 or tuple(z.shape[1:]) != tuple(latent_shape) or len(z) == 0:
        raise UsageError(
            f"{path} holds latents of shape {z.shape}; this model decodes (N, {', '.join(map(str, latent_shape))})"
        )
    return torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))


def write_pngs(images: torch.Tensor, out_dir: str | Path, *, start: int = 0) -> list[Path]:
    """images (N, 3, H, W) in [0, 1] (clamped) → ``out_dir``/{start + i:05d}.png, rounded to uint8."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pixels = to_uint8(images.float().clamp(0, 1)).permute(0, 2, 3, 1).numpy()  # NxHxWx3
    paths = [out_dir / f"{start + i:05d}.png" for i in range(len(pixels))]
    for path, image in zip(paths, pixels):
        Image.fromarray(image).save(path, format="PNG")
    return paths


def decode_to_pngs(package: ModelPackage, z: torch.Tensor, out_dir: str | Path, *, batch_size: int) -> int:
    """Decode z (N, L, 16, 16) ``batch_size`` at a time into ``out_dir``/00000.png …; returns N."""
    with tqdm(total=len(z), desc="decode", **PROGRESS) as bar:
        for start in range(0, len(z), batch_size):
            bar.update(len(write_pngs(package.decode(z[start : start + batch_size]), out_dir, start=start)))
    return len(z)


def generate_pngs(package: ModelPackage, num: int, out_dir: str | Path, *, grid: int, **settings) -> torch.Tensor:
    """``num`` samples (``settings``: steps, eta, seed, batch_size) as ``out_dir``/00000.png …; the first ``grid``."""
    shown: list[torch.Tensor] = []
    batches = package.generate_batches(num, **settings)  # settings checked before the progress bar starts
    with tqdm(total=num, desc="generate", **PROGRESS) as bar:
        for batch in batches:
            write_pngs(batch, out_dir, start=bar.n)
            shown.append(batch[: grid - sum(map(len, shown))])
            bar.update(len(batch))
    return torch.cat(shown)
