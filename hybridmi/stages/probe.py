"""Stage probe: linear-probe accuracy (and the kNN monitor) of the frozen features y, ŷ and z."""

from __future__ import annotations

import logging
from pathlib import Path

from hybridmi.config import Config
from hybridmi.data.prepared import load_dataset
from hybridmi.eval.features import encode_split, feature_views
from hybridmi.eval.knn import knn_accuracy
from hybridmi.eval.probe import linear_probe
from hybridmi.models.serialize import load_autoencoder
from hybridmi.runtime import choose_device, seed_everything, write_json
from hybridmi.stages.common import finish_output, report_eval

log = logging.getLogger(__name__)

INPUTS = ("dataset", "model")
OUTPUTS = ("metrics",)
HEADLINE = "z"  # "one representation": the headline accuracy probes all of z


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    e = cfg.eval
    seed_everything(cfg.train.seed)
    device = choose_device(cfg.runtime.device)
    train, test = load_dataset(inputs["dataset"])
    splits = {"train": train, "test": test}
    model = load_autoencoder(inputs["model"] / "model.pt", device=device)
    z = {name: encode_split(model.encoder, s, batch_size=e.batch_size, device=device) for name, s in splits.items()}
    views = {name: feature_views(v, contrastive_channels=cfg.model.contrastive_channels) for name, v in z.items()}
    num_classes = len(train.classes)
    probe = dict(weight_decays=e.probe_weight_decays, val_fraction=e.probe_val_fraction, epochs=e.probe_epochs)
    probe |= dict(batch_size=e.probe_batch_size, lr=e.probe_lr, seed=cfg.train.seed, device=device)
    neighbours = dict(num_classes=num_classes, k=e.knn_k, temperature=e.knn_temperature)
    metrics: dict[str, float] = {}
    confusion = None
    for feature in e.probe_features:
        x_train, x_test = views["train"][feature], views["test"][feature]
        result = linear_probe(x_train, train.labels, x_test, test.labels, num_classes=num_classes, **probe)
        knn = knn_accuracy(x_train.to(device), train.labels, x_test.to(device), test.labels, **neighbours)
        metrics |= {f"linear_acc_{feature}": result.accuracy, f"probe_weight_decay_{feature}": result.weight_decay}
        metrics[f"knn_acc_{feature}"] = knn
        log.info("probe %s: linear %.4f (wd %g), kNN %.4f", feature, result.accuracy, result.weight_decay, knn)
        if feature == HEADLINE or confusion is None:
            confusion = result.confusion
    metrics["linear_acc"] = metrics.get(f"linear_acc_{HEADLINE}", metrics[f"linear_acc_{e.probe_features[0]}"])
    report_eval(callbacks, metrics)
    confusion_json = {"classes": train.classes, "confusion_matrix": confusion.tolist()}
    write_json(outputs["metrics"] / "confusion.json", confusion_json)
    finish_output(outputs["metrics"], cfg, stage="probe", metrics=metrics)
    return metrics
