"""The stage DAG derived from the stages' own declarations (INPUTS/OUTPUTS), for the in-process runner.

An input named after a stage (report's ``probe``, ``reconstruction``, ``fid``) is that stage's first
output; any other input is the output of the one stage that declares it. The KFP pipeline wires the
same edges by hand; tests/pipelines compares the two.
"""

from __future__ import annotations

from hybridmi.stages import STAGE_NAMES, stage_module


def producers() -> dict[str, str]:
    """Artifact name -> the stage that writes it, for artifact names written by exactly one stage."""
    seen: dict[str, list[str]] = {}
    for stage in STAGE_NAMES:
        for output in stage_module(stage).OUTPUTS:
            seen.setdefault(output, []).append(stage)
    return {name: stages[0] for name, stages in seen.items() if len(stages) == 1}


def wiring() -> dict[str, dict[str, tuple[str, str]]]:
    """Stage -> {input name: (producing stage, its output name)} for every stage, in pipeline order."""
    unique = producers()
    edges: dict[str, dict[str, tuple[str, str]]] = {}
    for stage in STAGE_NAMES:
        edges[stage] = {}
        for name in stage_module(stage).INPUTS:
            if name in STAGE_NAMES:
                edges[stage][name] = (name, stage_module(name).OUTPUTS[0])
            elif name in unique:
                edges[stage][name] = (unique[name], name)
            else:
                raise ValueError(f"stage {stage}: input {name!r} is written by no single stage")
    return edges


def execution_order() -> list[str]:
    """The stages in an order where every producer runs before its consumers (STAGE_NAMES order, checked)."""
    edges, done = wiring(), []
    for stage in STAGE_NAMES:
        late = [producer for producer, _ in edges[stage].values() if producer not in done]
        if late:
            raise ValueError(f"stage {stage} is listed before its producer(s) {', '.join(late)} in STAGE_NAMES")
        done.append(stage)
    return done
