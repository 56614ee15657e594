"""A run's resolved config and pipeline arguments, as both runners pass them (``hybridmi run`` and ``hybridmi submit``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from hybridmi.config import Config, config_to_text, load_config
from hybridmi.errors import UsageError
from hybridmi.parameters import CONFIG_NAMES, resolve_config
from pipelines.parameters import pipeline_arguments
from pipelines.rerun import input_artifact_types


def run_arguments(
    cfg_path: str | Path | None,
    overrides: Sequence[str] = (),
    *,
    parameters: Mapping[str, Any] | None = None,
    only: str | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> tuple[Config, dict[str, Any]]:
    """(resolved Config, pipeline arguments): config text, task parameters, ``alphas``; checks rerun inputs.

    Config parameters are applied to the config text here, by the rules every task applies to its own.
    """
    parameters = dict(parameters or {})
    config_values = {k: v for k, v in parameters.items() if k in CONFIG_NAMES}
    cfg = load_config(cfg_path, list(overrides))
    if config_values:
        cfg = resolve_config(cfg, config_values)
    task_values = {k: v for k, v in parameters.items() if k not in config_values and k != "alphas"}
    arguments: dict[str, Any] = pipeline_arguments(config_to_text(cfg), **task_values)
    if "alphas" in parameters:
        arguments["alphas"] = [str(float(a)) for a in parameters["alphas"]]  # config parameters are text
    if only:
        expected, given = set(input_artifact_types(only)), set(inputs or {})
        if given != expected:
            raise UsageError(
                f"stage {only} needs inputs {', '.join(sorted(expected)) or '(none)'}; "
                f"got {', '.join(sorted(given)) or '(none)'}"
            )
    return cfg, arguments


def train_nodes(arguments: dict) -> int:
    """The run's ``train_nodes`` (1 when not given); a 1 is removed from ``arguments``: one node is the plain pipeline,
    which has no such parameter. More than one selects the multi-node pipeline (``compile.pipeline_for``)."""
    nodes = int(arguments.get("train_nodes", "1"))
    if nodes == 1:
        arguments.pop("train_nodes", None)
    return nodes


def checkout_image(needed_for: str) -> str:
    """The tag docker/build.sh gives this checkout's image; UsageError from an installed package."""
    from components.image import checkout_image

    try:
        return checkout_image(needed_for=needed_for)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
