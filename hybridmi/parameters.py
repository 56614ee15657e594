"""Config parameters: stage-prefixed pipeline parameters that each override one config field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from hybridmi.config import Config, ConfigError, config_from_dict
from hybridmi.errors import UsageError


@dataclass(frozen=True)
class Parameter:
    """A pipeline parameter: name, default (its type is the parameter's type), meaning; for a config parameter,
    the dotted config field it sets and the stage whose task applies it."""

    name: str
    default: Any
    description: str
    config_path: str | None = None
    stage: str | None = None


CONFIG_PARAMETERS = (
    Parameter(
        "hybrid_alpha",
        "",
        "α, weight of reconstruction in α·recon + (1−α)·InfoNCE, in [0, 1]",
        "objective.alpha",
        "train",
    ),
    Parameter(
        "hybrid_epochs",
        "",
        "hybrid autoencoder training length in epochs (unused while a time budget is set)",
        "train.epochs",
        "train",
    ),
    Parameter(
        "hybrid_time_budget_minutes",
        "",
        "hybrid training length in wall-clock minutes; 'null' trains for hybrid_epochs",
        "train.time_budget_minutes",
        "train",
    ),
    Parameter("hybrid_seed", "", "seed of weights, augmentation and shuffling", "train.seed", "train"),
    Parameter("ddim_epochs", "", "latent DDIM training length in epochs", "ddim.epochs", "ddim"),
    Parameter("ddim_sample_steps", "", "DDIM sampling steps S", "sampling.steps", "sample"),
    Parameter("ddim_eta", "", "DDIM η (0: deterministic sampler)", "sampling.eta", "sample"),
    Parameter("fid_num_samples", "", "generated samples FID is computed on", "sampling.num_samples", "sample"),
)
CONFIG_NAMES = frozenset(p.name for p in CONFIG_PARAMETERS)


def stage_parameters(stage: str) -> tuple[Parameter, ...]:
    """The config parameters the task of ``stage`` applies."""
    return tuple(p for p in CONFIG_PARAMETERS if p.stage == stage)


def config_field(tree: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` of a config dict."""
    for key in path.split("."):
        tree = tree[key]
    return tree


def _parse(parameter: Parameter, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"config error: pipeline parameter {parameter.name}={raw!r} is not a YAML value") from None


def resolve_config(cfg: Config | dict[str, Any], values: Mapping[str, Any]) -> Config:
    """``cfg`` (a Config or a config dict) with every non-empty config parameter in ``values`` applied, validated once.

    ValueError naming an unknown parameter; ConfigError naming the field and the parameters given.
    """
    unknown = sorted(set(values) - CONFIG_NAMES)
    if unknown:
        raise UsageError(
            f"unknown config parameter(s) {', '.join(unknown)}; known: {', '.join(p.name for p in CONFIG_PARAMETERS)}"
        )
    tree = cfg.model_dump(mode="json") if isinstance(cfg, Config) else cfg
    given = {p: values[p.name] for p in CONFIG_PARAMETERS if values.get(p.name, "") != ""}
    for parameter, raw in given.items():
        *sections, leaf = parameter.config_path.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = _parse(parameter, raw)
    try:
        return config_from_dict(tree)
    except ConfigError as err:
        names = ", ".join(f"{p.name}={raw!r}" for p, raw in given.items())
        raise ConfigError(f"{err} (pipeline parameters: {names or 'none'})") from None
