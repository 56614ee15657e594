"""KFP pipelines: the full hybridmi DAG, the α sweep and one-stage reruns (compiled YAML in compiled/)."""

from pipelines.alpha_sweep import alpha_sweep, build_alpha_sweep
from pipelines.hybridmi_pipeline import build_hybridmi_pipeline, hybridmi_multinode_pipeline, hybridmi_pipeline
from pipelines.rerun import rerun_pipeline

# File name in pipelines/compiled/ -> pipeline function (what `hybridmi compile` writes), default limits.
COMPILED = {
    "hybridmi.yaml": hybridmi_pipeline,
    "hybridmi_multinode.yaml": hybridmi_multinode_pipeline,
    "alpha_sweep.yaml": alpha_sweep,
}

__all__ = [
    "COMPILED",
    "alpha_sweep",
    "build_alpha_sweep",
    "build_hybridmi_pipeline",
    "hybridmi_multinode_pipeline",
    "hybridmi_pipeline",
    "rerun_pipeline",
]
