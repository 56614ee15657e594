"""Typed configuration (defaults live here only), YAML presets, ``--set a.b=value`` overrides; one-line errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hybridmi.errors import HybridmiError


class ConfigError(HybridmiError, ValueError):
    """A configuration that cannot be used; the message is one line naming the field."""


MAX_CONFIG_BYTES = 1 << 20  # a config is a page of settings; YAML aliases (any size once expanded) are refused
MAX_SHOWN_VALUE = 80  # characters of a bad value quoted in an error line


class _Section(BaseModel):
    # allow_inf_nan=False: every float is finite (an infinite budget or temperature would fail hours later).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


class DataConfig(_Section):
    source: Literal["cifar10", "cifar100", "folder", "synthetic"] = Field(
        "synthetic", description="cifar10/100: torchvision pickles; folder: ROOT/{train,test}/<class>/*.png|jpg"
    )
    root: str | None = Field(None, description="where the source lives (directory or .tar.gz); unused for synthetic")
    download: bool = Field(False, description="let torchvision download CIFAR when missing (off: offline runs fail)")
    cache_dir: str = Field("~/.cache/hybridmi/data", description="decoded uint8 tensor files, keyed by source")
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
    standardize_y: bool = Field(
        True, description="the MoCo head standardises y by running statistics; false: its first Linear reads raw y"
    )

    @model_validator(mode="after")
    def _split(self) -> "ModelConfig":
        if not 0 < self.contrastive_channels < self.latent_channels:
            raise ValueError(
                f"model.contrastive_channels {self.contrastive_channels} does not split model.latent_channels "
                f"{self.latent_channels} into y and ŷ: it must be between 1 and {self.latent_channels - 1}"
            )
        return self


class ObjectiveConfig(_Section):
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of reconstruction; 0 = MoCo-v2, 1 = autoencoder")
    queue_size: int = Field(4096, ge=1, description="MoCo queue length K (a multiple of the batch size)")
    momentum: float = Field(0.99, ge=0.0, le=1.0, description="MoCo key-encoder EMA momentum m")
    temperature: float = Field(0.1, gt=0.0, description="InfoNCE temperature T")
    symmetric: bool = Field(True, description="symmetrised InfoNCE (both views as queries)")
    bn_splits: int = Field(8, ge=1, description="SplitBatchNorm groups per view in both encoders; 1 = whole batch")
    shuffle_bn: bool = Field(True, description="stratified key shuffle: no key shares its query's BN group")
    autoencoder_views: Literal["flip", "clean", "moco"] = Field("flip", description="α = 1 trains on these views")
    recon_reaches_y: bool = Field(
        True,
        description="the reconstruction gradient reaches y; false: y is trained by InfoNCE alone (decoded detached)",
    )


class OptimConfig(_Section):
    name: Literal["adamw", "sgd"] = Field("adamw", description="optimiser")
    lr: float = Field(1e-3, gt=0.0, description="peak learning rate (after warm-up)")
    weight_decay: float = Field(1e-4, ge=0.0, description="decoupled weight decay (adamw) or L2 (sgd)")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd momentum / adamw beta1")
    warmup_epochs: float = Field(1.0, ge=0.0, description="linear warm-up length in epochs, then cosine to zero")
    grad_clip: float = Field(0.0, ge=0.0, description="global grad-norm clip; 0 disables")
    head_lr_scale: float = Field(1.0, gt=0.0, description="the MoCo head's learning rate as a multiple of optim.lr")


class TrainConfig(_Section):
    epochs: float = Field(10.0, gt=0.0, description="training length in passes over the train split")
    batch_size: int = Field(256, ge=2, description="images per step (global, over all ranks)")
    seed: int = Field(0, description="seed for weights, augmentation and shuffling")
    time_budget_minutes: float | None = Field(None, gt=0.0, description="wall-clock minutes; replaces epochs")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (plus one at the end)")
    log_every: int = Field(20, ge=1, description="steps between progress reports and reads of the finite checks")
    knn_every: int = Field(0, ge=0, description="epochs between kNN monitor evaluations; 0 disables")
    ranks: int | Literal["auto"] = Field("auto", description="DDP ranks on this node; 'auto': one per CUDA GPU or 1")

    @field_validator("ranks", mode="before")
    @classmethod
    def _ranks(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("train.ranks must be 'auto' or a positive integer")


class RuntimeConfig(_Section):
    """Where and how every stage computes; resuming across these is allowed (they change only rounding)."""

    device: str = Field("auto", description="'auto' (cuda if present), 'cpu' or 'cuda[:N]'")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="training autocast; auto = bf16 where the device has it natively (CUDA, AVX512-BF16/AMX)"
    )
    threads: int = Field(0, ge=0, description="torch CPU threads (per rank); 0 keeps torch's default")
    compile: bool = Field(False, description="torch.compile the hybrid step's losses or the UNet")
    channels_last: bool | Literal["auto"] = Field(
        "auto", description="memory layout; auto = where measured faster for the network and device, true/false force"
    )


class EvalConfig(_Section):
    batch_size: int = Field(512, ge=1, description="images per encoder forward pass")
    probe_epochs: int = Field(100, ge=1, description="full-batch-ish epochs of logistic regression")
    probe_batch_size: int = Field(1024, ge=1, description="probe minibatch")
    probe_lr: float = Field(1e-2, gt=0.0, description="probe learning rate (Adam)")
    probe_weight_decays: list[float] = Field([0.0, 1e-5, 1e-4, 1e-3], min_length=1, description="picked on val split")
    probe_val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="part of train held out to pick weight decay")
    probe_features: list[Literal["y", "yhat", "z"]] = Field(["y", "yhat", "z"], min_length=1, description="probed")
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
    ema_warmup: bool = Field(True, description="decay min(ema_decay, (1+n)/(10+n)) at update n")
    warmup_steps: int = Field(1000, ge=0, description="linear learning-rate warm-up")
    seed: int = Field(0, description="seed for weights, batch order, timesteps and noise")
    checkpoint_every: int = Field(1000, ge=1, description="steps between checkpoints (plus one at the end)")
    log_every: int = Field(50, ge=1, description="steps between progress updates / metric callbacks")


class SamplingConfig(_Section):
    eta: float = Field(0.0, ge=0.0, description="DDIM eta; 1 with steps = T is ancestral DDPM")
    steps: int = Field(100, ge=1, description="sampling steps S")
    spacing: Literal["uniform", "quadratic"] = Field("uniform", description="timestep skip spacing")
    num_samples: int = Field(50000, ge=2, description="samples drawn once per run: FID's N (figures take the first)")
    batch_size: int = Field(500, ge=1, description="samples per sampler call")
    seed: int = Field(0, description="sampler seed")


class FIDConfig(_Section):
    reference_split: Literal["train", "test"] = Field("train", description="split whose statistics are the reference")
    reference_samples: int = Field(0, ge=0, description="seeded random subset of that split; 0 = the whole split")
    reference_seed: int = Field(0, description="seed of the random reference subset (recorded beside the FID)")
    batch_size: int = Field(200, ge=1, description="images per Inception forward pass")
    weights: str | None = Field(None, description="pt_inception weights file; default: torch.hub cache")
    cache_dir: str = Field("~/.cache/hybridmi/fid-stats", description="reference statistics; $HYBRIDMI_FID_CACHE wins")


class FiguresConfig(_Section):
    pairs: int = Field(8, ge=1, description="test-image pairs interpolated")
    steps: int = Field(10, ge=2, description="interpolation points t per row")
    grid_samples: int = Field(64, ge=1, description="DDIM samples in the sample grid")


class MonitoringConfig(_Section):
    pushgateway_url: str | None = Field(None, description="Pushgateway host:port or URL, no credentials; None: off")
    push_interval_s: float = Field(15.0, gt=0.0, description="seconds between pushes (plus one at the end)")
    delete_on_finish: bool = Field(False, description="delete the {run_id, stage} group when the stage ends")
    metrics_port: int = Field(0, ge=0, le=65535, description="serve /metrics on this port; 0 disables")
    metrics_addr: str = Field("0.0.0.0", description="address the /metrics server binds (127.0.0.1 for local runs)")
    run_id: str = Field("", description="run label for metrics; empty: the task's run id and config hash")

    @field_validator("pushgateway_url")
    @classmethod
    def _no_credentials(cls, url: str | None) -> str | None:
        if url and "@" in urlsplit(url if "//" in url else f"//{url}").netloc:
            raise ValueError(
                "monitoring.pushgateway_url: credentials in the URL are refused (the config is saved with every "
                "artifact); set HYBRIDMI_PUSHGATEWAY_USERNAME and HYBRIDMI_PUSHGATEWAY_PASSWORD instead"
            )
        return url


class Config(BaseModel):
    """The whole run: one section per concern; stages read the sections they need."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field("run", description="run name used in output paths and metric labels")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    runtime: RuntimeConfig = RuntimeConfig()
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
        k, o, batch, ranks = self.objective.queue_size, self.objective, self.train.batch_size, self.train.ranks
        enqueued = batch * (2 if o.symmetric else 1)
        split_bn = o.alpha < 1.0 and o.bn_splits > 1
        if o.alpha < 1.0 and k % enqueued:
            raise ValueError(
                f"objective.queue_size {k} is not a multiple of the {enqueued} keys enqueued per step "
                f"(train.batch_size {batch}{' x 2 views, symmetric' if o.symmetric else ''})"
            )
        if split_bn and (batch % o.bn_splits or batch // o.bn_splits < 2):
            raise ValueError(
                f"train.batch_size {batch} does not split into objective.bn_splits {o.bn_splits} BatchNorm groups "
                f"of at least 2 images each"
            )
        if self.sampling.steps > self.diffusion.num_timesteps:
            raise ValueError(
                f"sampling.steps {self.sampling.steps} exceeds the {self.diffusion.num_timesteps} training "
                "timesteps (diffusion.num_timesteps)"
            )
        if isinstance(ranks, int) and ranks > 1 and batch % ranks:
            raise ValueError(f"train.batch_size {batch} does not split evenly over train.ranks {ranks}")
        if isinstance(ranks, int) and ranks > 1 and split_bn and o.bn_splits % ranks:
            raise ValueError(
                f"objective.bn_splits {o.bn_splits} is not a multiple of train.ranks {ranks}: each rank "
                "must hold whole BatchNorm groups"
            )
        return self

    def hash(self) -> str:
        """Short content hash of the resolved config (stable key order)."""
        return _short_hash(self.model_dump(mode="json"))

    def training_identity(self) -> dict[str, Any]:
        """What the trainers' weights depend on: a checkpoint is resumed only under equal values of these."""
        # Left out: evaluation, sampling, FID, figures, monitoring, name, run length, runtime (changes rounding only).
        dump = self.model_dump(mode="json")
        identity = {section: dump[section] for section in ("data", "model", "objective", "optim", "unet", "diffusion")}
        identity["train_shape"] = {"batch_size": self.train.batch_size, "seed": self.train.seed}
        identity["ddim_shape"] = {"batch_size": self.ddim.batch_size, "seed": self.ddim.seed}
        return identity

    def with_ranks(self, ranks: int) -> "Config":
        """This config with ``train.ranks`` resolved (from 'auto'), its cross-field rules checked again."""
        return config_from_dict(self.model_dump(mode="json"), [f"train.ranks={ranks}"])

    def training_hash(self) -> str:
        """Short hash of ``training_identity``: one branch of training (the α sweep's branches differ in it)."""
        return _short_hash(self.training_identity())


def _short_hash(tree: Any) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]


def _format_error(err: ValidationError) -> str:
    first, *rest = err.errors()
    kind, loc, value = first["type"], first["loc"], first.get("input")
    msg = "unknown key" if kind == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
    shown = "<redacted>" if loc[-1:] == ("pushgateway_url",) else repr(value)
    shown = shown if len(shown) <= MAX_SHOWN_VALUE else shown[:MAX_SHOWN_VALUE] + "..."
    detail = "" if kind in ("extra_forbidden", "missing") or isinstance(value, dict) else f" (got {shown})"
    prefix = "" if kind == "value_error" else f"{'.'.join(map(str, loc)) or 'config'}: "
    return f"config error: {prefix}{msg}{detail}" + (f" [+{len(rest)} more]" if rest else "")


def _apply_override(tree: dict[str, Any], assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"config error: override {assignment[:MAX_SHOWN_VALUE]!r} is not of the form a.b=value")
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config error: {dotted}: {key} is not a section")
    try:
        node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config error: {dotted}: value {raw!r} is not valid YAML ({type(exc).__name__})") from None


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
    if path is None:
        return config_from_dict({}, overrides)
    if not (path := Path(path)).is_file():
        raise ConfigError(f"config error: file {path} does not exist")
    if (size := path.stat().st_size) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config error: {path} is {size} bytes; a config is at most {MAX_CONFIG_BYTES}")
    return config_from_text(path.read_text(), overrides, where=str(path))


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: ``*name`` can expand a few hundred bytes into gigabytes (nested references)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            line = self.peek_event().start_mark.line + 1
            raise ConfigError(f"config error: YAML aliases are not allowed in a config (line {line})")
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
    """The Config of YAML (or JSON) ``text`` (empty: the defaults), plus overrides; ConfigError naming ``where``."""
    return config_from_dict(parse_config_text(text, where=where), overrides)


def config_to_text(cfg: Config) -> str:
    """The one text form of a resolved config: YAML that ``config_from_text`` reads back to an equal Config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def write_config(cfg: Config, directory: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config beside an output; returns its path."""
    out = Path(directory) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(config_to_text(cfg))
    return out
