"""What the ``configure`` task runs: config text + config parameters → the resolved config text.

The parameter tables live with their owners: config parameters in ``hybridmi/parameters.py``
(library), every other run parameter in ``pipelines/parameters.py``. This module imports neither
kfp nor ``pipelines``, so the configure pod loads only the library.
"""

from __future__ import annotations

from typing import Any, Mapping

from hybridmi.config import Config, config_from_text, config_to_text
from hybridmi.parameters import resolve_config as _resolve
from hybridmi.task.failure import recording_failure


def resolve_config(config: str, values: Mapping[str, Any]) -> Config:
    """``config`` (YAML text of a config; empty = defaults) with the non-empty config parameters applied."""
    return _resolve(config_from_text(config), values)


def resolve_config_text(config: str, **values: Any) -> str:
    """What the ``configure`` component returns: the resolved config as YAML text (failures recorded as 'configure')."""
    with recording_failure("configure"):
        return config_to_text(resolve_config(config, values))
