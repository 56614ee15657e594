"""Config parameters: stage-prefixed pipeline parameters that override one config field each.

They are strings; an empty string keeps the value of the resolved config, so a preset passed as the
``config`` parameter is never silently overridden by a default. This table is library code (no kfp)
because the ``configure`` task applies it inside the pod; the pipelines' other parameters (image,
scheduling, resources) are pipeline definitions and live in ``pipelines/parameters.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from hybridmi.config import Config, ConfigError, config_from_dict


@dataclass(frozen=True)
class Parameter:
    """A pipeline parameter: name, default (its type is the parameter's type), meaning, config field it sets."""

    name: str
    default: Any
    description: str
    config_path: str | None = None  # dotted config field this parameter overrides


CONFIG_PARAMETERS = (
    Parameter(
        "hybrid_alpha", "", "α, weight of reconstruction in α·recon + (1−α)·InfoNCE, in [0, 1]", "objective.alpha"
    ),
    Parameter(
        "hybrid_epochs",
        "",
        "hybrid autoencoder training length in epochs (unused while a time budget is set)",
        "train.epochs",
    ),
    Parameter(
        "hybrid_time_budget_minutes",
        "",
        "hybrid training length in wall-clock minutes; 'null' trains for hybrid_epochs",
        "train.time_budget_minutes",
    ),
    Parameter("hybrid_seed", "", "seed of weights, augmentation and shuffling", "train.seed"),
    Parameter("ddim_epochs", "", "latent DDIM training length in epochs", "ddim.epochs"),
    Parameter("ddim_sample_steps", "", "DDIM sampling steps S (the sample stage)", "sampling.steps"),
    Parameter("ddim_eta", "", "DDIM η (0: deterministic sampler)", "sampling.eta"),
    Parameter("fid_num_samples", "", "generated samples FID is computed on", "sampling.num_samples"),
)
CONFIG_NAMES = frozenset(p.name for p in CONFIG_PARAMETERS)


def _parse(parameter: Parameter, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"config error: pipeline parameter {parameter.name}={raw!r} is not a YAML value") from None


def resolve_config(cfg: Config, values: Mapping[str, Any]) -> Config:
    """``cfg`` with every non-empty config parameter in ``values`` applied, validated once.

    ValueError naming an unknown parameter; ConfigError naming the field and the parameters given.
    """
    unknown = sorted(set(values) - CONFIG_NAMES)
    if unknown:
        raise ValueError(
            f"unknown config parameter(s) {', '.join(unknown)}; known: {', '.join(p.name for p in CONFIG_PARAMETERS)}"
        )
    tree = cfg.model_dump(mode="json")
    for parameter in CONFIG_PARAMETERS:
        raw = values.get(parameter.name, "")
        if raw == "" or raw is None:
            continue
        *sections, leaf = parameter.config_path.split(".")
        node = tree
        for section in sections:
            node = node[section]
        node[leaf] = _parse(parameter, raw)
    try:
        return config_from_dict(tree)
    except ConfigError as err:
        names = ", ".join(
            f"{p.name}={values[p.name]!r}" for p in CONFIG_PARAMETERS if values.get(p.name) not in ("", None)
        )
        raise ConfigError(f"{err} (pipeline parameters: {names or 'none'})") from None
