"""The pipeline parameters, documented once: what each one sets and how it reaches the config.

Config parameters are strings; an empty string keeps the value of the ``config`` parameter (the YAML
text of a resolved config), so a preset passed as ``config`` is never silently overridden by a
default. ``resolve_config`` applies them (it runs in the ``configure`` component, first in every
pipeline, and in the in-process runner); ``pipeline_arguments`` builds the arguments a run submits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from hybridmi.cluster import STORE_SECRET_NAME
from hybridmi.config import Config, ConfigError, config_from_dict
from hybridmi.orchestrate.task import config_from_text, config_to_text, recording_failure


@dataclass(frozen=True)
class Parameter:
    name: str
    default: str
    description: str
    config_path: str | None = None  # dotted config field this parameter overrides


CONFIG_PARAMETERS = (
    Parameter("hybrid_alpha", "", "α, weight of reconstruction in α·recon + (1−α)·InfoNCE, in [0, 1]", "objective.alpha"),
    Parameter("hybrid_epochs", "", "hybrid autoencoder training length in epochs", "train.epochs"),
    Parameter("hybrid_seed", "", "seed of weights, augmentation and shuffling", "train.seed"),
    Parameter("ddim_epochs", "", "latent DDIM training length in epochs", "ddim.epochs"),
    Parameter("ddim_sample_steps", "", "DDIM sampling steps S (sample, fid, figures)", "sampling.steps"),
    Parameter("ddim_eta", "", "DDIM η (0: deterministic sampler)", "sampling.eta"),
    Parameter("fid_num_samples", "", "generated samples FID is computed on", "sampling.num_samples"),
)

TASK_PARAMETERS = (
    Parameter("config", "", "YAML text of the resolved config (hybridmi config); empty = defaults; never credentials"),
    Parameter("gpu_type", "nvidia.com/gpu", "accelerator resource of the GPU stages (train, latents, ddim, fid); empty: no GPU request"),
    Parameter("gpu_count", "1", "GPUs per GPU stage; empty: no GPU request (GPU-less clusters, CI)"),
    Parameter("task_cpu_request", "1", "CPU request of every stage pod (Kubernetes quantity)"),
    Parameter("task_memory_request", "4Gi", "memory request of every stage pod (Kubernetes quantity)"),
    Parameter("store_secret", STORE_SECRET_NAME, "Kubernetes Secret whose keys become the object-storage env of every stage pod (optional)"),
)

PARAMETERS = {p.name: p for p in TASK_PARAMETERS + CONFIG_PARAMETERS}


def _parse(parameter: Parameter, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"config error: pipeline parameter {parameter.name}={raw!r} is not a YAML value") from None


def resolve_config(config: str, values: Mapping[str, Any]) -> Config:
    """``config`` text with every non-empty config parameter in ``values`` applied, validated once."""
    unknown = sorted(set(values) - {p.name for p in CONFIG_PARAMETERS})
    if unknown:
        raise ValueError(f"unknown config parameter(s) {', '.join(unknown)}; known: {', '.join(p.name for p in CONFIG_PARAMETERS)}")
    tree = config_from_text(config).model_dump(mode="json")
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
        names = ", ".join(f"{p.name}={values[p.name]!r}" for p in CONFIG_PARAMETERS if values.get(p.name) not in ("", None))
        raise ConfigError(f"{err} (pipeline parameters: {names or 'none'})") from None


def resolve_config_text(config: str, **values: Any) -> str:
    """What the ``configure`` component returns: the resolved config as YAML text (failures recorded as 'configure')."""
    with recording_failure("configure"):
        return config_to_text(resolve_config(config, values))


def pipeline_arguments(cfg: Config, **task_values: str) -> dict[str, str]:
    """Arguments for a run of ``cfg``: the config text; config parameters stay empty (the text has them).

    task_values: any of the task parameters (gpu_type, gpu_count, ...); unknown names are a ValueError.
    """
    unknown = sorted(set(task_values) - {p.name for p in TASK_PARAMETERS if p.name != "config"})
    if unknown:
        raise ValueError(f"unknown pipeline parameter(s) {', '.join(unknown)}")
    return {"config": config_to_text(cfg), **{k: str(v) for k, v in task_values.items()}}


def parameters_markdown() -> str:
    """The parameter table for docs (components/README.md embeds it)."""
    rows = ["| parameter | default | sets | meaning |", "|---|---|---|---|"]
    for p in TASK_PARAMETERS + CONFIG_PARAMETERS:
        rows.append(f"| `{p.name}` | `{p.default}` | {f'`{p.config_path}`' if p.config_path else '—'} | {p.description} |")
    return "\n".join(rows) + "\n"
