"""Typed configuration: one pydantic tree, YAML presets, ``--set a.b=value`` overrides.

Every field's default lives here and only here; presets in ``configs/*.yaml`` override them.
A config is validated once, at the entry point, and a bad one fails with ONE line that names
the field and the reason (``ConfigError``) before any work starts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration that cannot be used; the message is one line naming the field."""


# A config file is a page of settings: bigger files, and YAML aliases (which expand to any size), are refused.
MAX_CONFIG_BYTES = 1 << 20
MAX_SHOWN_VALUE = 80  # characters of a bad value quoted in an error line


class _Section(BaseModel):
    # allow_inf_nan=False: every float is finite (an infinite budget or temperature would fail hours later).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


class DataConfig(_Section):
    source: Literal["cifar10", "cifar100", "folder", "synthetic"] = Field(
        "synthetic",
        description="cifar10/cifar100: torchvision pickle layout; folder: ROOT/{train,test}/<class>/*.png|jpg (dir or .tar.gz); synthetic: procedural",
    )
    root: str | None = Field(None, description="where the source lives (directory or .tar.gz); unused for synthetic")
    download: bool = Field(
        False, description="let torchvision download CIFAR when missing (off: offline runs fail fast)"
    )
    cache_dir: str = Field(
        "~/.cache/hybridmi/data", description="where decoded uint8 tensor files are kept, keyed by source identity"
    )
    synthetic_classes: int = Field(10, ge=2, le=1000, description="synthetic: number of classes")
    synthetic_train: int = Field(2000, ge=10, description="synthetic: training images")
    synthetic_test: int = Field(500, ge=10, description="synthetic: test images")
    synthetic_seed: int = Field(0, description="synthetic: generator seed")

    @model_validator(mode="after")
    def _root_needed(self) -> "DataConfig":
        if self.source == "folder" and not self.root:
            raise ValueError("data.root is required when data.source is 'folder'")
        return self


class ModelConfig(_Section):
    channels: int = Field(64, ge=4, le=1024, description="width of the 32x32 stage; the 16x16 stage uses twice this")
    cells_32: int = Field(1, ge=0, le=16, description="encoder/decoder residual cells at 32x32")
    cells_16: int = Field(2, ge=0, le=32, description="encoder/decoder residual cells at 16x16")
    decoder_expand: int = Field(6, ge=1, le=8, description="NVAE decoder cell 1x1 expansion ratio")
    latent_channels: int = Field(6, ge=2, le=64, description="channels of z (16x16xC)")
    contrastive_channels: int = Field(3, ge=1, description="first channels of z used as y for MoCo")
    proj_hidden: int = Field(2048, ge=16, description="MoCo-v2 projection MLP hidden width")
    proj_dim: int = Field(128, ge=8, description="MoCo-v2 projection output dimension")

    @model_validator(mode="after")
    def _split(self) -> "ModelConfig":
        if not 0 < self.contrastive_channels < self.latent_channels:
            raise ValueError(
                f"model.contrastive_channels {self.contrastive_channels} does not split model.latent_channels "
                f"{self.latent_channels} into y and ŷ: it must be between 1 and {self.latent_channels - 1}"
            )
        return self


class ObjectiveConfig(_Section):
    alpha: float = Field(
        0.5, ge=0.0, le=1.0, description="weight of reconstruction; 0 = MoCo-v2 only, 1 = autoencoder only"
    )
    queue_size: int = Field(4096, ge=1, description="MoCo queue length K (a multiple of the batch size)")
    momentum: float = Field(0.99, ge=0.0, le=1.0, description="MoCo key-encoder EMA momentum m")
    temperature: float = Field(0.1, gt=0.0, description="InfoNCE temperature T")
    symmetric: bool = Field(True, description="symmetrised InfoNCE (both views as queries)")
    bn_splits: int = Field(
        8,
        ge=1,
        description="BatchNorm groups per view and batch in both encoders, query and key "
        "(SplitBatchNorm, as the MoCo CIFAR demo); 1 = whole-batch BN; train.batch_size must divide into them",
    )
    shuffle_bn: bool = Field(
        True,
        description="assign keys to BN groups by a stratified shuffle so no key's BN group is "
        "its positive's query group; false keeps the query grouping (the leak shuffle-BN removes)",
    )
    autoencoder_views: Literal["flip", "clean", "moco"] = Field(
        "flip",
        description="what the α = 1 baseline (autoencoder alone) trains on: clean images with random horizontal "
        "flips, clean images, or the MoCo-v2 views the hybrid reconstructs",
    )


class OptimConfig(_Section):
    name: Literal["adamw", "sgd"] = Field("adamw", description="optimiser")
    lr: float = Field(1e-3, gt=0.0, description="peak learning rate (after warm-up)")
    weight_decay: float = Field(1e-4, ge=0.0, description="decoupled weight decay (adamw) or L2 (sgd)")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd momentum / adamw beta1")
    warmup_epochs: float = Field(1.0, ge=0.0, description="linear warm-up length in epochs, then cosine to zero")
    grad_clip: float = Field(0.0, ge=0.0, description="global grad-norm clip; 0 disables")


class TrainConfig(_Section):
    epochs: float = Field(10.0, gt=0.0, description="training length in passes over the train split")
    batch_size: int = Field(256, ge=2, description="images per step")
    seed: int = Field(0, description="seed for weights, augmentation and shuffling")
    device: str = Field("auto", description="'auto' (cuda if present), 'cpu' or 'cuda[:N]'")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto = bf16 autocast on CUDA, fp32 on CPU")
    channels_last: bool = Field(True, description="channels_last memory format on CUDA")
    compile: bool = Field(
        False, description="torch.compile the step's loss computation (both encoder passes, decoder, heads, InfoNCE)"
    )
    time_budget_minutes: float | None = Field(
        None,
        gt=0.0,
        description="wall-clock training budget in minutes: replaces epochs; warm-up + cosine are laid over "
        "the number of steps estimated once, after the warm-up, from the measured step time (recorded in checkpoints)",
    )
    on_nonfinite: Literal["stop", "skip_step"] = Field(
        "stop",
        description="a NaN/inf loss or gradient: stop naming the step and tensor, or skip that update and count it "
        "(the optimiser, BN statistics, key encoder, queue and EMA are left as before the step)",
    )
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (plus one at the end)")
    log_every: int = Field(
        20,
        ge=1,
        description="steps between progress updates / metric callbacks and reads of the device-side finite checks",
    )
    knn_every: int = Field(0, ge=0, description="epochs between kNN monitor evaluations; 0 disables")
    threads: int = Field(0, ge=0, description="torch CPU threads (per rank); 0 keeps torch's default")
    ranks: int | Literal["auto"] = Field(
        "auto",
        description="DDP processes the train stage starts on this node through torchrun (NCCL on CUDA, gloo on "
        "the CPU): 'auto' = one per visible CUDA device when training on CUDA, else 1. batch_size stays the global batch, "
        "split evenly over ranks (objective.bn_splits a multiple of the ranks); the learning rate needs no change",
    )

    @field_validator("ranks", mode="before")
    @classmethod
    def _ranks(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("train.ranks must be 'auto' or a positive integer")


class EvalConfig(_Section):
    batch_size: int = Field(512, ge=1, description="images per encoder forward pass")
    probe_epochs: int = Field(100, ge=1, description="full-batch-ish epochs of logistic regression")
    probe_batch_size: int = Field(1024, ge=1, description="probe minibatch")
    probe_lr: float = Field(1e-2, gt=0.0, description="probe learning rate (Adam)")
    probe_weight_decays: list[float] = Field(
        [0.0, 1e-5, 1e-4, 1e-3], min_length=1, description="candidates, picked on a held-out part of train"
    )
    probe_val_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="part of train held out to pick the weight decay"
    )
    probe_features: list[Literal["y", "yhat", "z"]] = Field(
        ["y", "yhat", "z"], min_length=1, description="features probed"
    )
    knn_k: int = Field(200, ge=1, description="kNN monitor neighbours")
    knn_temperature: float = Field(0.1, gt=0.0, description="kNN monitor softmax temperature")


class LatentsConfig(_Section):
    flip: bool = Field(True, description="also encode horizontal flips of the train split")
    dtype: Literal["float16", "float32"] = Field("float16", description="storage dtype of latent files")
    batch_size: int = Field(512, ge=1, description="images per encoder forward pass")


class UNetConfig(_Section):
    channels: int = Field(128, ge=8, description="base width")
    channel_mult: list[int] = Field([1, 2, 2], min_length=1, description="width multiplier per resolution level")
    num_res_blocks: int = Field(2, ge=1, description="residual blocks per level")
    attn_resolutions: list[int] = Field([8], description="resolutions (e.g. 16, 8) with self-attention")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in residual blocks")


class DiffusionConfig(_Section):
    beta_schedule: Literal["linear", "cosine"] = Field("linear", description="noise schedule")
    beta_start: float = Field(1e-4, gt=0.0, lt=1.0, description="linear schedule first beta")
    beta_end: float = Field(0.02, gt=0.0, lt=1.0, description="linear schedule last beta")
    num_timesteps: int = Field(1000, ge=2, description="T")

    @model_validator(mode="after")
    def _increasing(self) -> "DiffusionConfig":
        if self.beta_start >= self.beta_end:
            raise ValueError(f"diffusion.beta_start {self.beta_start} must be below diffusion.beta_end {self.beta_end}")
        return self


class DDIMTrainConfig(_Section):
    epochs: float = Field(100.0, gt=0.0, description="passes over the latent train set")
    batch_size: int = Field(128, ge=1, description="latents per step")
    lr: float = Field(2e-4, gt=0.0, description="Adam learning rate")
    grad_clip: float = Field(1.0, ge=0.0, description="global grad-norm clip; 0 disables")
    ema_decay: float = Field(0.9999, ge=0.0, lt=1.0, description="EMA of the weights")
    ema_warmup: bool = Field(
        True, description="use min(ema_decay, (1+n)/(10+n)) at update n so short runs get a useful EMA"
    )
    warmup_steps: int = Field(1000, ge=0, description="linear learning-rate warm-up")
    checkpoint_every: int = Field(1000, ge=1, description="steps between checkpoints (plus one at the end)")
    log_every: int = Field(50, ge=1, description="steps between progress updates / metric callbacks")


class SamplingConfig(_Section):
    eta: float = Field(0.0, ge=0.0, description="DDIM eta; 1 with steps = T is ancestral DDPM")
    steps: int = Field(100, ge=1, description="sampling steps S")
    spacing: Literal["uniform", "quadratic"] = Field("uniform", description="timestep skip spacing")
    num_samples: int = Field(
        50000,
        ge=1,
        description="samples the sample stage draws once per run: FID's N (the figures' grid takes the first)",
    )
    batch_size: int = Field(500, ge=1, description="samples per sampler call")
    seed: int = Field(0, description="sampler seed")


class FIDConfig(_Section):
    reference_split: Literal["train", "test"] = Field("train", description="split whose statistics are the reference")
    reference_samples: int = Field(
        0, ge=0, description="reference images drawn at random (seeded) from that split; 0 = the whole split"
    )
    reference_seed: int = Field(0, description="seed of the random reference subset (recorded beside the FID)")
    batch_size: int = Field(200, ge=1, description="images per Inception forward pass")
    weights: str | None = Field(
        None,
        description="explicit pt_inception weights file; default: torch.hub cache (made by `hybridmi fid-weights`)",
    )
    cache_dir: str = Field(
        "~/.cache/hybridmi/fid-stats",
        description="reference statistics cache, keyed by data checksum, weights sha256 and subset; $HYBRIDMI_FID_CACHE overrides",
    )


class FiguresConfig(_Section):
    pairs: int = Field(8, ge=1, description="test-image pairs interpolated")
    steps: int = Field(10, ge=2, description="interpolation points t per row")
    grid_samples: int = Field(64, ge=1, description="DDIM samples in the sample grid")


class MonitoringConfig(_Section):
    pushgateway_url: str | None = Field(
        None, description="Pushgateway address (host:port or URL); None disables pushing"
    )
    push_interval_s: float = Field(
        15.0, gt=0.0, description="seconds between pushes while a stage runs (plus one at the end)"
    )
    delete_on_finish: bool = Field(
        False, description="delete the {run_id, stage} group from the gateway when the stage ends"
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="serve /metrics on this port while a stage runs; 0 disables"
    )
    metrics_addr: str = Field(
        "0.0.0.0", description="address the /metrics server binds (0.0.0.0 in pods; 127.0.0.1 for local runs)"
    )
    run_id: str = Field(
        "",
        description="run identifier used as a metric label; empty: the task's run id (KFP run or local run) and config hash",
    )


class Config(BaseModel):
    """The whole run: one section per concern; stages read the sections they need."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field("run", description="run name used in output paths and metric labels")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    latents: LatentsConfig = LatentsConfig()
    unet: UNetConfig = UNetConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    ddim: DDIMTrainConfig = DDIMTrainConfig()
    sampling: SamplingConfig = SamplingConfig()
    fid: FIDConfig = FIDConfig()
    figures: FiguresConfig = FiguresConfig()
    monitoring: MonitoringConfig = MonitoringConfig()

    @model_validator(mode="after")
    def _queue_fits_batch(self) -> "Config":
        # Each step enqueues the keys of one view, or of both views with the symmetric loss.
        k, o, batch = self.objective.queue_size, self.objective, self.train.batch_size
        enqueued = batch * (2 if o.symmetric else 1)
        if o.alpha < 1.0 and k % enqueued:
            raise ValueError(
                f"objective.queue_size {k} is not a multiple of the {enqueued} keys enqueued per step "
                f"(train.batch_size {batch}{' x 2 views, symmetric' if o.symmetric else ''})"
            )
        if o.alpha < 1.0 and o.bn_splits > 1 and (batch % o.bn_splits or batch // o.bn_splits < 2):
            raise ValueError(
                f"train.batch_size {batch} does not split into objective.bn_splits {o.bn_splits} BatchNorm groups "
                f"of at least 2 images each"
            )
        if self.sampling.steps > self.diffusion.num_timesteps:
            raise ValueError(
                f"sampling.steps {self.sampling.steps} exceeds the {self.diffusion.num_timesteps} training "
                "timesteps (diffusion.num_timesteps)"
            )
        ranks = self.train.ranks
        if isinstance(ranks, int) and ranks > 1:
            if batch % ranks:
                raise ValueError(f"train.batch_size {batch} does not split evenly over train.ranks {ranks}")
            if o.alpha < 1.0 and o.bn_splits > 1 and o.bn_splits % ranks:
                raise ValueError(
                    f"objective.bn_splits {o.bn_splits} is not a multiple of train.ranks {ranks}: each rank "
                    "must hold whole BatchNorm groups"
                )
        return self

    def hash(self) -> str:
        """Short content hash of the resolved config (stable key order)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def training_identity(self) -> dict[str, Any]:
        """What the trainers' weights depend on: the sections a checkpoint may not be resumed across (their
        ``RESUME_SECTIONS``), and the batch and seed that shape each step. Evaluation, sampling, FID, figures,
        monitoring, the name and the device settings are left out: a run may resume under other values of those."""
        dump = self.model_dump(mode="json")
        identity = {section: dump[section] for section in ("data", "model", "objective", "optim", "unet", "diffusion")}
        identity["train_shape"] = {"batch_size": self.train.batch_size, "seed": self.train.seed}
        identity["ddim_shape"] = {"batch_size": self.ddim.batch_size}
        return identity

    def training_hash(self) -> str:
        """Short hash of ``training_identity``: one branch of training (the α sweep's branches differ in it)."""
        blob = json.dumps(self.training_identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    shown = repr(first.get("input"))
    shown = shown if len(shown) <= MAX_SHOWN_VALUE else shown[:MAX_SHOWN_VALUE] + "..."
    detail = (
        f" (got {shown})"
        if first["type"] not in ("extra_forbidden", "missing") and not isinstance(first.get("input"), dict)
        else ""
    )
    more = f" [+{len(err.errors()) - 1} more]" if len(err.errors()) > 1 else ""
    prefix = "" if first["type"] == "value_error" else f"{where}: "
    return f"config error: {prefix}{msg}{detail}{more}"


def _apply_override(tree: dict[str, Any], assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"config error: override {assignment[:MAX_SHOWN_VALUE]!r} is not of the form a.b=value")
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config error: {dotted}: {key} is not a section")
        node = child
    try:
        node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config error: {dotted}: value {raw!r} is not valid YAML ({exc.__class__.__name__})"
        ) from None


def config_from_dict(tree: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Validate a plain dict (plus ``a.b=value`` overrides) into a Config or raise ConfigError."""
    tree = json.loads(json.dumps(tree))  # deep copy; overrides never touch the caller's dict
    for assignment in overrides:
        _apply_override(tree, assignment)
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML preset (or none: all defaults), apply overrides, validate."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config error: file {path} does not exist")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config error: {path} is {path.stat().st_size} bytes; a config is at most {MAX_CONFIG_BYTES}"
            )
        tree = parse_config_text(path.read_text(), where=str(path))
    return config_from_dict(tree, overrides)


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: ``*name`` can expand a few hundred bytes into gigabytes (nested references)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            raise ConfigError(
                f"config error: YAML aliases are not allowed in a config (line {self.peek_event().start_mark.line + 1})"
            )
        return super().compose_node(parent, index)


def parse_config_text(text: str, *, where: str = "config") -> dict[str, Any]:
    """A config's YAML text as a dict (empty text: ``{}``); ConfigError for oversized, aliased or malformed text."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config error: {where} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        tree = yaml.load(text, Loader=_NoAliasLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config error: {where} is not valid YAML: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config error: {where} must hold a mapping at the top level")
    return tree


def config_from_text(text: str, overrides: list[str] | tuple[str, ...] = (), *, where: str = "config") -> Config:
    """The Config whose YAML (or JSON) text is ``text`` (empty: the defaults), plus overrides; ConfigError naming ``where``."""
    return config_from_dict(parse_config_text(text, where=where), overrides)


def config_to_text(cfg: Config) -> str:
    """The one text form of a resolved config: YAML that ``config_from_text`` reads back to an equal Config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def write_config(cfg: Config, directory: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config beside an output; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / name
    out.write_text(config_to_text(cfg))
    return out
