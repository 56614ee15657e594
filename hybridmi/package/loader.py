"""Load a hybridmi model package with plain torch: encode images, decode latents, generate images with DDIM.

This file is copied into every package as ``load.py`` and imports only torch, numpy and the standard library, so a
service loads a package without hybridmi installed:

    spec = importlib.util.spec_from_file_location("hybridmi_package", "PKG/load.py")
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    package = module.load("PKG")                       # checksums verified; programs load on first use
    z, y, yhat = package.encode(images)                # (B, 3, 32, 32) in [0, 1] → (B, L, 16, 16), y, ŷ
    images = package.generate(16, steps=50, eta=0.0, seed=0)

``python PKG/load.py`` checks the package it lies in (checksums, then every program loads) and prints one line.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

FORMAT = 1
KIND = "hybridmi-model-package"
MANIFEST = "package.json"
CHECKSUMS = "checksums.json"
PROGRAMS = ("encoder", "decoder", "denoiser")  # name → <name>.pt2, torch.export programs with a dynamic batch size


class PackageError(ValueError):
    """A package that cannot be used; the message is one line naming the file."""


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(root: str | Path) -> dict[str, str]:
    """Check every file ``checksums.json`` lists against its sha256; returns {relative path: sha256}.

    Files it does not list (a pipeline's artifact.json, __pycache__) are never read by ``load``.
    """
    root = Path(root)
    listing = root / CHECKSUMS
    if not listing.is_file():
        raise PackageError(f"{root} is not a hybridmi model package (no {CHECKSUMS})")
    try:
        files = json.loads(listing.read_text())["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PackageError(f"{listing} is not a checksum list ({type(exc).__name__})") from None
    if not isinstance(files, dict):
        raise PackageError(f"{listing} is not a checksum list (its files are not a mapping)")
    required = [MANIFEST, *(f"{name}.pt2" for name in PROGRAMS)]
    unlisted = [name for name in required if name not in files]
    if unlisted:
        raise PackageError(f"{listing} does not list {', '.join(unlisted)}")
    for name, expected in sorted(files.items()):
        path = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not path.is_file():
            raise PackageError(f"package file {path} is missing")
        found = sha256(path)
        if found != expected:
            raise PackageError(
                f"package file {path} does not match its checksum in {CHECKSUMS} "
                f"(sha256 {found[:12]}…, expected {expected[:12]}…): the package was changed or damaged"
            )
    return files


def timesteps(num_train: int, num_sample: int, spacing: str) -> list[int]:
    """The S timesteps the sampler visits, ascending in [0, T − 1] (ermongroup/ddim's skip types).

    uniform:   t_i = i · (T // S)
    quadratic: t_i = floor((i · sqrt(0.8 T) / (S − 1))²), bumped to stay strictly increasing
    """
    if spacing == "uniform":
        skip = num_train // num_sample
        return [i * skip for i in range(num_sample)]
    if spacing == "quadratic":
        raw = (np.linspace(0, np.sqrt(num_train * 0.8), num_sample) ** 2).astype(int).tolist()
        seq: list[int] = []
        for t in raw:  # small t collide after flooring; keep exactly S distinct steps
            seq.append(max(t, seq[-1] + 1) if seq else t)
        if seq[-1] >= num_train:
            raise ValueError(f"quadratic spacing cannot fit {num_sample} distinct steps in {num_train} timesteps")
        return seq
    raise ValueError(f"unknown timestep spacing {spacing!r}; use 'uniform' or 'quadratic'")


def ddim_step(
    x_t: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor, a_prev: torch.Tensor, *, eta: float, noise
) -> torch.Tensor:
    """One DDIM update x_t → x_{t_prev} (Song et al., 2021, eq. 12), a_t = ᾱ_t, a_prev = ᾱ_{t_prev} (1 at the end).

    x̂_0 = (x_t − sqrt(1 − a_t) ε̂) / sqrt(a_t);  σ = η · sqrt((1 − a_prev)/(1 − a_t) · (1 − a_t/a_prev))
    x_prev = sqrt(a_prev) x̂_0 + sqrt(1 − a_prev − σ²) ε̂ + σ · noise
    """
    x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
    x_prev = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0:
        x_prev = x_prev + sigma * noise
    return x_prev


class ModelPackage:
    """The exported encoder, decoder and DDIM denoiser with the latent standardisation and sampler defaults.

    The checksums are verified here; each program is deserialised when first used (``program``)."""

    def __init__(self, root: str | Path, *, device: str | torch.device = "cpu") -> None:
        self.root, self.device = Path(root), torch.device(device)
        self.checksums = verify(self.root)
        self.manifest = json.loads((self.root / MANIFEST).read_text())
        if self.manifest.get("kind") != KIND or self.manifest.get("format") != FORMAT:
            found = f"{self.manifest.get('kind')!r} format {self.manifest.get('format')!r}"
            raise PackageError(f"{self.root / MANIFEST} describes {found}; this loader reads {KIND!r} format {FORMAT}")
        self._programs: dict[str, torch.nn.Module] = {}  # loaded on first use: encode needs only the encoder
        latent, norm = self.manifest["latent"], self.manifest["standardisation"]
        self.latent_shape = (latent["channels"], latent["size"], latent["size"])
        self.contrastive_channels = latent["contrastive_channels"]
        self.mean = torch.tensor(norm["mean"], dtype=torch.float64)  # (C,) float64
        self.std = torch.tensor(norm["std"], dtype=torch.float64)
        self.alphas_cumprod = torch.tensor(self.manifest["schedule"]["alphas_cumprod"], dtype=torch.float64)  # (T,)
        self.sampler = dict(self.manifest["sampler"])  # defaults: steps, eta, spacing, batch_size, seed

    def program(self, name: str) -> torch.nn.Module:
        """The program ``name`` (encoder | decoder | denoiser), loaded on first use, its bytes checked again first."""
        if name not in self._programs:
            path = self.root / f"{name}.pt2"
            if sha256(path) != self.checksums[path.name]:
                raise PackageError(f"package file {path} changed after its checksums were verified")
            program = torch.export.load(str(path))
            if self.device.type != "cpu":  # exported on the CPU: constants such as arange's device move too
                from torch.export.passes import move_to_device_pass

                program = move_to_device_pass(program, self.device)
            self._programs[name] = program.module()
        return self._programs[name]

    def _per_channel(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return v.to(device=z.device, dtype=z.dtype)[None, :, None, None]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (B, 3, 32, 32), float in [0, 1] or uint8 → (z (B, L, 16, 16), y = z[:, :c], ŷ = z[:, c:])."""
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, 32, 32):
            raise ValueError(f"encode expects (B, 3, 32, 32) images, got shape {tuple(images.shape)}")
        x = images.to(self.device)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        z = self.program("encoder")(x)
        return z, z[:, : self.contrastive_channels], z[:, self.contrastive_channels :]

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, L, 16, 16) → x̂ (B, 3, 32, 32) on the pixel scale of [0, 1], unbounded (clamp to save it)."""
        if z.dim() != 4 or tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"decode expects (B, {', '.join(map(str, self.latent_shape))}) latents, got {tuple(z.shape)}"
            )
        return self.program("decoder")(z.to(self.device).float()).float()

    @torch.no_grad()
    def sample_latents(self, num: int, *, steps: int, eta: float, spacing: str, generator: torch.Generator):
        """DDIM-sample ``num`` latents (num, L, 16, 16) float32, standardisation undone; noise from ``generator``."""
        shape = (num, *self.latent_shape)
        abar = self.alphas_cumprod.to(device=self.device, dtype=torch.float32)
        one = torch.ones((), dtype=torch.float32, device=self.device)

        def randn() -> torch.Tensor:
            return torch.randn(shape, generator=generator, device=generator.device).to(self.device)

        seq, denoiser = timesteps(len(abar), steps, spacing), self.program("denoiser")
        x = randn()
        for t, t_prev in zip(reversed(seq), reversed([-1] + seq[:-1])):
            eps = denoiser(x, torch.full((num,), t, dtype=torch.long, device=self.device)).float()
            a_prev = abar[t_prev] if t_prev >= 0 else one
            x = ddim_step(x, eps, abar[t], a_prev, eta=eta, noise=randn() if eta > 0 else None)
        return x * self._per_channel(self.std, x) + self._per_channel(self.mean, x)

    def generate_batches(
        self,
        num: int,
        *,
        steps: int | None = None,
        eta: float | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
    ) -> Iterator[torch.Tensor]:
        """``num`` decoded DDIM samples in batches (B ≤ batch_size, 3, 32, 32) in [0, 1], float32 on the CPU.

        None takes the package's default. One CPU generator seeded with ``seed`` draws every batch in turn: with
        the defaults these are the images the training run's sample stage drew."""
        s = self.sampler
        steps, eta = s["steps"] if steps is None else steps, s["eta"] if eta is None else eta
        seed, batch_size = s["seed"] if seed is None else seed, s["batch_size"] if batch_size is None else batch_size
        if num < 1 or batch_size < 1:
            raise ValueError(f"generate needs num >= 1 and batch_size >= 1, got {num} and {batch_size}")
        if not 1 <= steps <= len(self.alphas_cumprod):
            raise ValueError(f"steps {steps} is not in 1 … {len(self.alphas_cumprod)}, the timesteps of the schedule")
        if eta < 0:
            raise ValueError(f"eta {eta} is negative")
        return self._batches(num, steps=steps, eta=eta, seed=seed, batch_size=batch_size)  # settings checked now

    @torch.no_grad()
    def _batches(self, num: int, *, steps: int, eta: float, seed: int, batch_size: int) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        for start in range(0, num, batch_size):
            b = min(batch_size, num - start)
            z = self.sample_latents(b, steps=steps, eta=eta, spacing=self.sampler["spacing"], generator=generator)
            yield self.program("decoder")(z.float()).float().clamp(0, 1).cpu()

    def generate(self, num: int, **settings) -> torch.Tensor:
        """(num, 3, 32, 32) in [0, 1]: ``generate_batches`` (steps, eta, seed, batch_size) concatenated."""
        return torch.cat(list(self.generate_batches(num, **settings)))


def load(root: str | Path, *, device: str | torch.device = "cpu") -> ModelPackage:
    """The package in directory ``root``, its checksums verified before anything is loaded (PackageError if not)."""
    return ModelPackage(root, device=device)


if __name__ == "__main__":  # python PKG/load.py: check the package this file lies in
    here = Path(__file__).resolve().parent
    try:
        package = load(here)
        for name in PROGRAMS:
            package.program(name)
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    info = package.manifest
    print(f"ok: {here} ({KIND} format {FORMAT}, {len(package.checksums)} files, code {info['code_version']})")
