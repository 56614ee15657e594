"""The smoke preset (configs/smoke.yaml) shrunk to seconds per stage: the `--set key=value` overrides shared by
the tests that run stages or whole pipelines (tests/pipelines, tests/ops, tests/docker, tests/task/trainjob,
tests/faults). Imported by name (`from tiny_config import ...`): tests/ is on sys.path (the rootdir conftest).

Each caller adds what is its own beside the shared lists: the sample count and FID reference (how many images
FID compares, which depends on the weights it runs with), `runtime.threads` (scripts/main.sh and the image test
set one OpenMP thread themselves), longer training or more frequent checkpoints.
"""

from __future__ import annotations

# The prepare and train stages: 128 synthetic images of 4 classes, batches of 32, half an epoch, a checkpoint a step.
TRAIN = [
    "data.synthetic_classes=4",
    "data.synthetic_train=128",
    "data.synthetic_test=16",
    "model.channels=8",
    "model.proj_hidden=32",
    "model.proj_dim=16",
    "train.batch_size=32",
    "objective.queue_size=64",
    "train.epochs=0.5",
    "train.checkpoint_every=1",
    "optim.warmup_epochs=0",
]
# The linear probe of the eval stage.
PROBE = ["eval.batch_size=64", "eval.probe_epochs=2", "eval.probe_batch_size=64", "eval.probe_weight_decays=[0.0]"]
# Every stage of the pipeline, but for sampling.num_samples, sampling.batch_size and fid.reference_*.
PIPELINE = [
    *TRAIN,
    *PROBE,
    "eval.knn_k=5",
    "latents.batch_size=64",
    "latents.flip=false",
    "unet.channels=8",
    "unet.channel_mult=[1]",
    "unet.attn_resolutions=[]",
    "ddim.epochs=0.5",
    "ddim.batch_size=32",
    "ddim.warmup_steps=0",
    "ddim.checkpoint_every=1",
    "diffusion.num_timesteps=20",
    "sampling.steps=2",
    "fid.batch_size=20",
    "figures.pairs=1",
    "figures.steps=2",
    "figures.grid_samples=4",
]
# One torch thread in each task (tiny tensors gain nothing from more on shared cores).
ONE_THREAD = "runtime.threads=1"


def changed(overrides: list[str], *changes: str) -> list[str]:
    """``overrides`` less the entries of the keys that ``changes`` set, then ``changes`` (each ``key=value``): one
    entry per key, so what a run gets never hangs on which of two `--set`s of the same key wins."""
    new = {c.split("=", 1)[0]: c for c in changes}
    kept = [o for o in overrides if o.split("=", 1)[0] not in new]
    return [*kept, *new.values()]
