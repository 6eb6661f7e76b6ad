"""``langroute`` command line: evaluate, train and calibrate routers on an outcomes folder.

    langroute eval DATASET [--router sw --router knn] [--embedder minilm|hashing]
                           [--split kfold|halves] [--folds 5] [--seeds 1] [--out DIR] [--json]
    langroute train DATASET --router sw --output router.safetensors
    langroute calibrate ROUTER_FILE DATASET (--strong-fraction 0.3 | --target-cost 0.001)

Errors from langroute (bad data, unknown router, ...) print one line to stderr and exit 1;
command-line usage errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._exceptions import LangrouteError, RouterConfigError
from ._outcomes import Outcomes, load_outcomes
from .embeddings import Embedder, HashingEmbedder, SentenceTransformerEmbedder

__all__ = ["build_parser", "main"]

EMBEDDERS = ("minilm", "hashing")


def _make_embedder(name: str) -> Embedder:
    return SentenceTransformerEmbedder() if name == "minilm" else HashingEmbedder()


def _router_list(values: list[str] | None) -> list[str]:
    """``--router a --router b,c`` -> [a, b, c], checked against the registry."""
    from .evaluation import router_names

    names = [part.strip() for value in (values or ["sw"]) for part in value.split(",")]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in router_names()]
    if unknown:
        raise RouterConfigError(f"unknown router {unknown[0]!r}; valid names: {router_names()}")
    if len(set(names)) != len(names):
        raise RouterConfigError(f"--router lists a router twice: {names}")
    return names


def _load(dataset: str, models: str | None, output_tokens: float | None) -> Outcomes:
    data = load_outcomes(dataset)
    if models:
        data = data.select_models([m.strip() for m in models.split(",") if m.strip()])
    if output_tokens is not None:
        data = data.with_estimated_costs(output_tokens)
    return data


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="outcomes folder (prompts.jsonl, scores.csv, costs.csv)")
    parser.add_argument("--models", help="comma-separated models to use (default: all)")
    parser.add_argument("--output-tokens", type=float, metavar="N",
                        help="estimate costs from models.json prices with N output tokens per "
                             "call (for outcomes without costs.csv)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="langroute", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="cross-validate routers against baselines on a dataset")
    _add_data_options(ev)
    ev.add_argument("--router", action="append", metavar="NAME",
                    help="router to evaluate (repeatable or comma-separated; default sw)")
    ev.add_argument("--embedder", choices=EMBEDDERS, default="minilm")
    ev.add_argument("--split", choices=("kfold", "halves"), default="kfold",
                    help="k-fold cross-validation, or repeated random 50/50 splits")
    ev.add_argument("--folds", type=int, help="folds for --split kfold (default 5)")
    ev.add_argument("--seeds", type=int, default=1,
                    help="repetitions with seeds 0..N-1 (default 1)")
    ev.add_argument("--out", metavar="DIR", help="write report.json, report.md and plot.png")
    ev.add_argument("--no-plot", action="store_true", help="with --out, skip plot.png")
    ev.add_argument("--json", action="store_true",
                    help="print the JSON report instead of the table")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")

    tr = sub.add_parser("train", help="fit a router on a dataset and save it")
    _add_data_options(tr)
    tr.add_argument("--router", default="sw", metavar="NAME")
    tr.add_argument("--embedder", choices=EMBEDDERS, default="minilm")
    tr.add_argument("--output", "-o", required=True, metavar="FILE", help="router file to write")

    ca = sub.add_parser("calibrate", help="threshold for a target share of strong calls or cost")
    ca.add_argument("router_file", help="file written by `langroute train` or router.save()")
    _add_data_options(ca)
    target = ca.add_mutually_exclusive_group(required=True)
    target.add_argument("--strong-fraction", type=float, metavar="F",
                        help="share of prompts for the top (strongest) model, in [0, 1]")
    target.add_argument("--target-cost", type=float, metavar="USD",
                        help="average USD per call to aim for")
    ca.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    names = _router_list(args.router)
    data = _load(args.dataset, args.models, args.output_tokens)
    progress = not args.quiet and sys.stderr.isatty()
    report = evaluate(
        data, names, embedder=_make_embedder(args.embedder), split=args.split,
        folds=args.folds, seeds=args.seeds, progress=progress,
    )
    if args.out:
        paths = report.save(args.out, plot=not args.no_plot)
        for path in paths.values():
            print(f"wrote {path}", file=sys.stderr)
    print(report.to_json() if args.json else report.to_markdown(), end="" if not args.json
          else "\n")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .evaluation import make_router

    (name,) = _router_list([args.router])
    data = _load(args.dataset, args.models, args.output_tokens)
    router = make_router(name, _make_embedder(args.embedder)).fit(data)
    output = Path(args.output)
    if output.parent and not output.parent.exists():
        raise RouterConfigError(f"folder {output.parent} does not exist")
    router.save(output)
    print(f"trained {type(router).__name__} on {len(data)} prompts x {len(data.models)} models; "
          f"wrote {output}", file=sys.stderr)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from ._calibration import calibrate_threshold, routing_ladder
    from .routers import load_router

    router = load_router(args.router_file)
    data = _load(args.dataset, args.models, args.output_tokens)
    threshold = calibrate_threshold(
        router, data.prompts, strong_fraction=args.strong_fraction, target_cost=args.target_cost,
    )
    ladder = routing_ladder(router)
    chosen = ladder.choose(ladder.levels(router.win_matrices(data.prompts)), threshold)
    top = ladder.rungs[-1]
    assert router.costs_ is not None  # routing_ladder raised otherwise
    result = {
        "threshold": threshold,
        "strong_model": ladder.models[top],
        "strong_fraction": float(np.mean(chosen == top)),
        "mean_cost": float(np.mean(ladder.costs[chosen])),
        "n_prompts": len(data),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"threshold {threshold:.6g}: on {len(data)} prompts, "
              f"{100 * result['strong_fraction']:.1f}% go to {result['strong_model']}, "
              f"mean cost ${result['mean_cost']:.6g} per call (router's mean costs)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 langroute error, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return int(exc.code or 0)
    command = {"eval": _cmd_eval, "train": _cmd_train, "calibrate": _cmd_calibrate}[args.command]
    try:
        return command(args)
    except LangrouteError as exc:
        print(f"langroute {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
