"""The stage DAG from the stages' own declarations (INPUTS/OUTPUTS); the KFP pipeline wires the same edges by hand."""

from __future__ import annotations

from hybridmi.errors import UsageError
from hybridmi.stages import STAGE_NAMES, stage_module


def wiring() -> dict[str, dict[str, tuple[str, str]]]:
    """Stage -> {input name: (producing stage, its output name)} for every stage, in pipeline order."""
    seen: dict[str, list[str]] = {}
    for stage in STAGE_NAMES:
        for output in stage_module(stage).OUTPUTS:
            seen.setdefault(output, []).append(stage)
    edges: dict[str, dict[str, tuple[str, str]]] = {}
    for stage in STAGE_NAMES:
        edges[stage] = {}
        for name in stage_module(stage).INPUTS:
            if name in STAGE_NAMES:
                edges[stage][name] = (name, stage_module(name).OUTPUTS[0])
            elif len(seen.get(name, ())) == 1:
                edges[stage][name] = (seen[name][0], name)
            else:
                raise UsageError(f"stage {stage}: input {name!r} is written by no single stage")
    return edges


def execution_order() -> list[str]:
    """The stages in an order where every producer runs before its consumers (STAGE_NAMES order, checked)."""
    edges, done = wiring(), []
    for stage in STAGE_NAMES:
        late = [producer for producer, _ in edges[stage].values() if producer not in done]
        if late:
            raise UsageError(f"stage {stage} is listed before its producer(s) {', '.join(late)} in STAGE_NAMES")
        done.append(stage)
    return done


def made_from(stage: str) -> set[str]:
    """``stage`` and every stage whose outputs its inputs are made from."""
    return {stage}.union(*(made_from(producer) for producer, _ in wiring()[stage].values()))
