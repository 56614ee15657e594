"""hybridmi command line: train | stage | config | run | compile | submit.

Every command validates its config first (one-line error, exit 2) and calls the same library
functions a user or a pipeline component calls.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from hybridmi.config import ConfigError, load_config

log = logging.getLogger("hybridmi.cli")

# Errors that describe bad input or a failed run in one line; anything else keeps its traceback.
EXPECTED_ERRORS = (ValueError, FileNotFoundError, FloatingPointError, RuntimeError, OSError)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML preset (configs/*.yaml); defaults when omitted")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="A.B=VALUE",
                        help="override one config field (repeatable)")


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
    """prepare → train → probe → reconstruction in this process; artifacts under --out."""
    from hybridmi.stages import run_stage

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out)
    dirs = {name: out / name for name in ("dataset", "model", "probe", "reconstruction")}
    summary: dict[str, dict[str, float]] = {}
    summary["prepare"] = run_stage("prepare", cfg, {}, {"dataset": dirs["dataset"]})
    summary["train"] = run_stage("train", cfg, {"dataset": dirs["dataset"]}, {"model": dirs["model"]})
    summary["probe"] = run_stage("probe", cfg, {"dataset": dirs["dataset"], "model": dirs["model"]},
                                 {"metrics": dirs["probe"]})
    summary["reconstruction"] = run_stage("reconstruction", cfg, {"dataset": dirs["dataset"], "model": dirs["model"]},
                                          {"metrics": dirs["reconstruction"]})
    sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    """One stage by hand: local paths (or store URIs once wired through hybridmi.orchestrate)."""
    from hybridmi.stages import run_stage

    cfg = load_config(args.config, args.overrides)
    metrics = run_stage(args.name, cfg, _pairs(args.inputs, "--input"), _pairs(args.outputs, "--output"))
    sys.stdout.write(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return 0


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

    from hybridmi.stages import STAGE_NAMES

    p = sub.add_parser("stage", help="run one pipeline stage")
    p.add_argument("name", choices=STAGE_NAMES)
    _add_config_args(p)
    p.add_argument("--input", dest="inputs", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--output", dest="outputs", action="append", default=[], metavar="NAME=PATH")
    p.set_defaults(func=cmd_stage)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hybridmi.runtime import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"hybridmi: {exc}", file=sys.stderr)
        return 2
    except EXPECTED_ERRORS as exc:
        print(f"hybridmi: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
