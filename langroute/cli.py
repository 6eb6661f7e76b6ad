"""langroute command line: evaluate, train and calibrate routers on an outcomes folder.

    langroute eval DATASET [--router sw,knn:k=32] [--embedder minilm|hashing]
                           [--split kfold|halves] [--folds 5] [--seeds 1] [--out DIR] [--json]
    langroute train DATASET --router sw:gamma=10 --output router.safetensors
    langroute calibrate ROUTER_FILE [DATASET] (--strong-fraction 0.3 | --target-cost 0.001)
    langroute spend --store sqlite:///spend.db [--json]

Errors from langroute (bad data, unknown router, a router that failed in eval, a missing
optional dependency, ...) print to stderr and exit 1; command-line usage errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ._exceptions import LangrouteError, MissingDependencyError, OutcomesError, RouterConfigError
from ._outcomes import Outcomes, load_outcomes
from .embeddings import (
    Embedder,
    HashingEmbedder,
    OnnxMiniLMEmbedder,
    SentenceTransformerEmbedder,
    StaticEmbedder,
)
from .routers import BaseRouter

__all__ = ["EMBEDDERS", "build_parser", "main", "parse_router_specs"]

#: Embedder names of ``--embedder`` and how to build each.
EMBEDDERS: dict[str, Callable[[], Embedder]] = {
    "minilm": SentenceTransformerEmbedder,
    "minilm-onnx": OnnxMiniLMEmbedder,
    # long prompts read at both ends (``long_texts="head+tail"``), not just their first 256 pieces
    "minilm-head+tail": lambda: SentenceTransformerEmbedder(long_texts="head+tail"),
    "minilm-onnx-head+tail": lambda: OnnxMiniLMEmbedder(long_texts="head+tail"),
    "model2vec": StaticEmbedder,
    "hashing": HashingEmbedder,
}
#: Prompts embedded per step of a progress bar.
_CHUNK = 256


def _make_embedder(name: str) -> Embedder:
    return EMBEDDERS[name]()


# -- router specs ----------------------------------------------------------------------------------
def parse_router_specs(values: Sequence[str] | None) -> list[tuple[str, str, dict[str, Any]]]:
    """``--router`` values -> ``[(label, name, params)]``.

    Routers are separated by commas (or repeated ``--router``); ``name:p=v`` sets a parameter,
    more follow as ``:p=v`` or ``,p=v``: ``knn:k=32:prior=0.5,sw:gamma=10``. Values are read
    as JSON (numbers, true/false, null; ``none`` too), anything else as a string. The label is
    the name alone, or ``name(p=v, ...)`` with parameters.
    """
    from .evaluation import DEFAULT_ROUTER, router_names

    specs: list[tuple[str, dict[str, Any]]] = []
    for value in values or [DEFAULT_ROUTER]:
        for token in (part.strip() for part in value.split(",")):
            if not token:
                continue
            head, *settings = token.split(":")
            if "=" in head:  # ",p=v" continues the previous router
                if not specs:
                    raise RouterConfigError(f"--router {value!r}: {head!r} follows no router name")
                settings = [head, *settings]
            else:
                specs.append((head.strip(), {}))
            for setting in settings:
                key, sep, raw = setting.partition("=")
                if not sep or not key.strip():
                    raise RouterConfigError(
                        f"--router {value!r}: expected param=value after ':', got {setting!r}"
                    )
                specs[-1][1][key.strip()] = _parse_value(raw.strip())
    names = router_names()
    unknown = [name for name, _ in specs if name not in names]
    if unknown:
        raise RouterConfigError(f"unknown router {unknown[0]!r}; valid names: {names}")
    out = []
    for name, params in specs:
        label = name
        if params:
            label += "(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"
        out.append((label, name, params))
    labels = [label for label, _, _ in out]
    if len(set(labels)) != len(labels):
        raise RouterConfigError(f"--router lists a router twice: {labels}")
    return out


def _parse_value(raw: str) -> Any:
    if raw.lower() in ("none", "null"):
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _build_router(name: str, params: dict[str, Any], embedder: Embedder | None) -> BaseRouter:
    """A router of registry ``name`` with ``params`` set and checked (before any data is read)."""
    from .evaluation import make_router

    router = make_router(name, embedder)
    router.set_params(**params)
    router._validate_params()
    return router


# -- inputs and outputs ----------------------------------------------------------------------------
def _load(dataset: str, models: str | None, output_tokens: float | None) -> Outcomes:
    data = load_outcomes(dataset)
    if models:
        data = data.select_models(_model_list(models))
    if output_tokens is not None:
        data = data.with_estimated_costs(output_tokens)
    return data


def _output_tokens(raw: str) -> float:
    """``--output-tokens``: a finite count >= 0, checked as a usage error before any work."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens, got {raw!r}") from None
    if not (np.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {raw!r}")
    return value


def _model_list(models: str) -> list[str]:
    return [m.strip() for m in models.split(",") if m.strip()]


def _os_reason(exc: OSError) -> str:
    """The OS's reason for a failed write, without the (possibly very long) path."""
    return exc.strerror or str(exc)


def _check_output_file(path: str) -> Path:
    """Fail before any work if ``path`` cannot be written as a file."""
    out = Path(path)
    try:
        if out.is_dir():
            raise RouterConfigError(f"cannot write {out}: it is a folder; give a file name")
        folder = out.parent
        if not folder.is_dir():
            raise RouterConfigError(f"cannot write {out}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise RouterConfigError(f"cannot write {out}: folder {folder} is not writable")
    except OSError as exc:  # e.g. a name too long: an error message, not a traceback
        raise RouterConfigError(f"cannot write {out}: {_os_reason(exc)}") from exc
    return out


def _check_output_dir(path: str) -> Path:
    """Fail before any work if folder ``path`` cannot be created or written."""
    out = Path(path)
    try:
        if out.exists() and not out.is_dir():
            raise RouterConfigError(f"cannot write reports to {out}: it is a file")
        existing = out
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise RouterConfigError(
                f"cannot write reports to {out}: {existing} is not writable")
    except OSError as exc:  # e.g. a name too long: an error message, not a traceback
        raise RouterConfigError(f"cannot write reports to {out}: {_os_reason(exc)}") from exc
    return out


def _show_progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


@contextmanager
def _library_progress_bars(show: bool) -> Iterator[None]:
    """Hugging Face's own bars (transformers' "Loading weights" on every MiniLM load) follow
    ours: off with --quiet or when stderr is not a terminal, as they were afterwards."""
    if show:
        yield
        return
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    hub_was_disabled = are_progress_bars_disabled()
    # transformers copies the hub's setting when imported, so one imported later starts off
    # too; one imported already has its own switch.
    transformers_log = sys.modules.get("transformers.utils.logging")
    transformers_was_on = (transformers_log.is_progress_bar_enabled()
                           if transformers_log is not None else not hub_was_disabled)
    disable_progress_bars()
    if transformers_log is not None:
        transformers_log.disable_progress_bar()
    try:
        yield
    finally:
        transformers_log = sys.modules.get("transformers.utils.logging")
        if transformers_log is not None and transformers_was_on:
            transformers_log.enable_progress_bar()  # (turns the hub's on too)
        if hub_was_disabled:
            disable_progress_bars()
        else:
            enable_progress_bars()


def _embed_with_progress(embedder: Embedder, prompts: list[str], show: bool) -> None:
    """Embed ``prompts`` in chunks under a progress bar; the embedder's cache keeps them."""
    with tqdm(total=len(prompts), desc=f"embed ({embedder.kind})", unit="prompt",
              file=sys.stderr, disable=not show) as bar:
        for start in range(0, len(prompts), _CHUNK):
            chunk = prompts[start : start + _CHUNK]
            embedder.embed(chunk)
            bar.update(len(chunk))


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .evaluation import DEFAULT_ROUTER, router_names
    from .evaluation._online import DEFAULT_INITIAL_SHARE

    routers = ", ".join(router_names())
    embedders = ", ".join(EMBEDDERS)
    router_help = (f"routers: {routers}; set parameters as NAME:param=value, e.g. "
                   "knn:k=32,sw:gamma=10")
    parser = argparse.ArgumentParser(
        prog="langroute",
        description="Evaluate, train and calibrate langroute routers on an outcomes folder.",
        epilog=f"Routers: {routers}. Embedders: {embedders}.",
    )
    parser.add_argument("--version", action="version", version=f"langroute {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="cross-validate routers against baselines on a dataset",
                        epilog=f"Routers: {routers}. Embedders: {embedders}.")
    _add_data_options(ev)
    ev.add_argument("--router", action="append", metavar="SPEC",
                    help=f"router(s) to evaluate, comma-separated or repeated (default: the "
                         f"package's default router); {router_help}")
    ev.add_argument("--tune", action="store_true",
                    help="nested cross-validation: choose each router's unset hyperparameters "
                         "by inner 3-fold CV on the training folds of every outer fold")
    ev.add_argument("--tune-max-prompts", type=int, metavar="N",
                    help="with --tune, search on a random N training prompts per outer fold "
                         "(the final refit uses all of them)")
    ev.add_argument("--embedder", choices=list(EMBEDDERS), default="minilm",
                    help=f"prompt embedder: {embedders} (default minilm)")
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
    ev.add_argument("--online", action="store_true",
                    help="also replay each training fold as a stream: a '<router> online@25%%' "
                         "row learning from the chosen model's score only, beside a "
                         "'<router> static@25%%' row, for routers with partial_fit (sw, knn; "
                         "not with --tune); with --out, online.png plots both over time")
    ev.add_argument("--online-share", type=float, metavar="F",
                    help="initial share of each training fold for --online (default "
                         f"{DEFAULT_INITIAL_SHARE})")
    ev.add_argument("--cascade", action="append", metavar="SCORER",
                    help="also evaluate cascades (repeatable): 'agreement' (needs answers.csv) "
                         "or 'simulated:RATE' (RouterBench's simulated scorer with that error "
                         "rate); adds 'cascade:...' and, per router, '<router>+cascade:...', "
                         "'<router>+pair-cascade:...' and '<router>+chosen-cascade:...' rows")

    tr = sub.add_parser("train", help="fit a router on a dataset and save it",
                        epilog=f"Routers: {routers}. Embedders: {embedders}.")
    _add_data_options(tr)
    tr.add_argument("--router", default=DEFAULT_ROUTER, metavar="SPEC",
                    help=f"the router to fit (default {DEFAULT_ROUTER}); {router_help}")
    tr.add_argument("--embedder", choices=list(EMBEDDERS), default="minilm",
                    help=f"prompt embedder: {embedders} (default minilm)")
    tr.add_argument("--output", "-o", required=True, metavar="FILE", help="router file to write")
    _add_signing_key_option(tr, "sign the router file with the secret in environment variable "
                                "NAME (an HMAC that 'calibrate --signing-key-env' and "
                                "load_router(..., signing_key=...) verify)")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")

    ca = sub.add_parser(
        "calibrate", help="threshold for a target share of strong calls or cost",
        description="Without DATASET, calibrate on the out-of-fold scores the router kept "
                    "from fitting (nothing is embedded); with DATASET, on its prompts (use "
                    "held-out prompts, not the training ones).",
    )
    ca.add_argument("router_file", help="file written by 'langroute train' or router.save()")
    ca.add_argument("dataset", nargs="?",
                    help="outcomes folder of held-out prompts (default: the kept scores)")
    ca.add_argument("--models",
                    help="comma-separated candidate models (default: all the router's)")
    ca.add_argument("--output-tokens", type=_output_tokens, metavar="N",
                    help="price calls from DATASET's models.json with N output tokens per call "
                         "(default: the router's training costs)")
    target = ca.add_mutually_exclusive_group(required=True)
    target.add_argument("--strong-fraction", type=float, metavar="F",
                        help="share of prompts for the top (strongest) model, in [0, 1]")
    target.add_argument("--target-cost", type=float, metavar="USD",
                        help="average USD per call to aim for")
    ca.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_signing_key_option(ca, "refuse a router file not signed with the secret in "
                                "environment variable NAME")
    ca.add_argument("--quiet", action="store_true", help="no progress bars")

    sp = sub.add_parser("spend", help="spend and remaining budget per scope and window")
    sp.add_argument("--store", required=True, metavar="URL",
                    help="spend store: sqlite:///path/spend.db or redis://host:port/0")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _add_signing_key_option(parser: argparse.ArgumentParser, what: str) -> None:
    # A name, not the secret: a key on the command line shows in `ps` and shell history.
    parser.add_argument("--signing-key-env", metavar="NAME", help=what)


def _signing_key(args: argparse.Namespace) -> str | None:
    """The secret named by --signing-key-env (an unset or empty variable is an error)."""
    name = args.signing_key_env
    if name is None:
        return None
    key = os.environ.get(name)
    if not key:
        raise RouterConfigError(f"--signing-key-env {name}: environment variable {name} is "
                                "not set (or empty)")
    return key


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="outcomes folder (prompts.jsonl, scores.csv, costs.csv)")
    parser.add_argument("--models", help="comma-separated models to use (default: all)")
    parser.add_argument("--output-tokens", type=_output_tokens, metavar="N",
                        help="estimate costs from models.json prices with N output tokens per "
                             "call (for outcomes without costs.csv)")


# -- commands ------------------------------------------------------------------------------------
def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate
    from .evaluation._online import DEFAULT_INITIAL_SHARE

    specs = parse_router_specs(args.router)
    routers = {label: _build_router(name, params, None) for label, name, params in specs}
    if args.tune:
        from .evaluation import tuned_router

        routers = {f"{label} (tuned)": tuned_router(name, params,
                                                    max_tune_prompts=args.tune_max_prompts)
                   for label, name, params in specs}
    elif args.tune_max_prompts is not None:
        raise RouterConfigError("--tune-max-prompts applies only with --tune")
    if args.tune and args.online:
        raise RouterConfigError("--online replays routers that learn incrementally (partial_fit); "
                                "a --tune router refits from scratch and has none: run --online "
                                "without --tune (e.g. --router sw:gamma=10 --online)")
    if args.online_share is not None and not args.online:
        raise RouterConfigError("--online-share applies only with --online")
    if args.no_plot and not args.out:
        raise RouterConfigError("--no-plot applies only with --out (no plot is written without it)")
    out = _check_output_dir(args.out) if args.out else None
    data = _load(args.dataset, args.models, args.output_tokens)
    report = evaluate(
        data, routers, embedder=_make_embedder(args.embedder), split=args.split,
        folds=args.folds, seeds=args.seeds, progress=_show_progress(args), on_error="record",
        online=args.online,
        online_share=(DEFAULT_INITIAL_SHARE if args.online_share is None
                      else args.online_share), cascades=args.cascade or (),
    )
    # How the report was made, so it can be reproduced (e.g. costs estimated by --output-tokens).
    from . import __version__

    report.data["run"] = {"command": shlex.join(["langroute", *args.argv]),
                          "langroute_version": __version__}
    status = 0
    not_written = None
    try:
        if out is not None:
            _write_reports(report, out, args)
    except OSError as exc:  # the work is done: still print the results, then say what failed
        not_written = (f"the evaluation finished, but its results were not written to {out}: "
                       f"{_os_reason(exc)}" + (f" ({exc.filename})" if exc.filename else ""))
    except MissingDependencyError as exc:
        print(f"langroute eval: warning: plot.png not written: {exc}", file=sys.stderr)
        status = 1
    print(report.to_json() if args.json else report.to_markdown(),
          end="\n" if args.json else "")
    for label, failure in report.data["failed"].items():
        print(f"langroute eval: error: router {label} failed (seed {failure['seed']}, fold "
              f"{failure['fold']}): {failure['error']}: {failure['message']}", file=sys.stderr)
        status = 1
    if not_written is not None:
        print(f"langroute eval: error: {not_written}", file=sys.stderr)
        status = 1
    return status


def _write_reports(report: Any, out: Path, args: argparse.Namespace) -> None:
    """report.json and report.md, then the plots (MissingDependencyError after the reports)."""
    for path in report.save(out, plot=False).values():
        print(f"wrote {path}", file=sys.stderr)
    if args.no_plot:
        return
    from .evaluation import plot_report

    print(f"wrote {plot_report(report, out / 'plot.png')}", file=sys.stderr)
    # Every router that could learn online may have failed: the errors below say why, so
    # there is no timeline to plot rather than a second, vaguer error.
    if args.online and any("online" in entry for entry in report.data["routers"].values()):
        from .evaluation._online import plot_online

        print(f"wrote {plot_online(report, out / 'online.png')}", file=sys.stderr)
    elif args.online:
        print("langroute eval: online.png not written: no router has online rows",
              file=sys.stderr)


def _cmd_train(args: argparse.Namespace) -> int:
    specs = parse_router_specs([args.router])
    if len(specs) != 1:
        raise RouterConfigError(
            f"train fits exactly one router; --router {args.router!r} names {len(specs)}"
        )
    ((label, name, params),) = specs
    embedder = _make_embedder(args.embedder)
    router = _build_router(name, params, embedder)
    output = _check_output_file(args.output)  # before the minute of work, not after
    signing_key = _signing_key(args)
    data = _load(args.dataset, args.models, args.output_tokens)
    show = _show_progress(args)
    if not router.learns_embedder:  # a contrastive router embeds with its own encoder
        _embed_with_progress(embedder, list(data.prompts), show)
    if show:
        print(f"fitting {label} (and its out-of-fold calibration scores)...", file=sys.stderr)
    router.fit(data)
    if data.costs is None:
        print(f"langroute train: note: {args.dataset} has no costs.csv, so the router is saved "
              "without costs; 'langroute calibrate' will need a DATASET with costs.csv or "
              "--output-tokens N (or train with --output-tokens N to estimate them from "
              "models.json)", file=sys.stderr)
    try:
        router.save(output, signing_key=signing_key)
    except OSError as exc:
        raise RouterConfigError(
            f"the router was trained, but not written to {output}: {_os_reason(exc)}"
        ) from exc
    print(f"trained {type(router).__name__} on {len(data)} prompts x {len(data.models)} models; "
          f"wrote {output}", file=sys.stderr)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from ._calibration import (
        calibration_win_matrices,
        routing_ladder,
        threshold_for_win_matrices,
    )
    from .routers import load_router

    router = load_router(args.router_file, signing_key=_signing_key(args))
    models = _model_list(args.models) if args.models else None
    if args.output_tokens is not None and args.dataset is None:
        raise RouterConfigError("--output-tokens prices calls from DATASET's models.json; "
                                "give a DATASET")
    costs = None
    if args.dataset is None:
        _check_router_costs(router, args.router_file)
        if getattr(router, "calibration_win_matrices_", None) is None:
            # The library's advice names calibrate_threshold(); the CLI's remedy is a DATASET.
            note = getattr(router, "_calibration_note", "") or "it predates calibration scores"
            raise RouterConfigError(
                f"{args.router_file}: this {type(router).__name__} kept no calibration scores "
                f"from fitting ({note}); give a DATASET argument of representative held-out "
                "prompts to calibrate on"
            )
        source = "the router's out-of-fold calibration scores of its training prompts"
        win = calibration_win_matrices(router, None)
    else:
        data = load_outcomes(args.dataset)
        _check_models_match(router, data, models)
        if models is not None:  # price (and score) only the candidates, not the other columns
            data = data.select_models(models)
        if args.output_tokens is not None:
            data = data.with_estimated_costs(args.output_tokens)
        if args.output_tokens is not None:
            estimated = data.mean_costs()
            assert estimated is not None  # with_estimated_costs sets them
            costs = {name: float(c) for name, c in zip(data.models, estimated, strict=True)}
        elif router.costs_ is None and data.mean_costs() is not None:
            mean_costs = data.mean_costs()
            assert mean_costs is not None
            costs = {name: float(c) for name, c in zip(data.models, mean_costs, strict=True)}
        if costs is None:
            _check_router_costs(router, args.router_file)  # before scoring the prompts
        source = f"{len(data)} prompts of {args.dataset}"
        win = _win_matrices_with_progress(router, list(data.prompts), _show_progress(args))
    ladder = routing_ladder(router, models=models, costs=costs)
    threshold = threshold_for_win_matrices(
        ladder, win, strong_fraction=args.strong_fraction, target_cost=args.target_cost,
    )
    chosen = ladder.choose(ladder.levels(win), threshold)
    top = ladder.rungs[-1]
    priced = ("estimated from models.json" if args.output_tokens is not None
              else "the dataset's" if costs is not None else "the router's training")
    result = {
        "threshold": threshold,
        "strong_model": ladder.models[top],
        "models": ladder.rung_names,
        "strong_fraction": float(np.mean(chosen == top)),
        "mean_cost": float(np.mean(ladder.costs[chosen])),
        "costs": f"{priced} mean costs",
        "n_prompts": int(len(win)),
        "calibrated_on": source,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"threshold {threshold:.6g}: on {source}, "
              f"{100 * result['strong_fraction']:.1f}% go to {result['strong_model']}, "
              f"mean cost ${result['mean_cost']:.6g} per call ({priced} mean costs)")
    return 0


def _check_router_costs(router: BaseRouter, router_file: str) -> None:
    """A router trained without costs needs them from a DATASET (the library says costs=)."""
    if router.costs_ is None:
        raise RouterConfigError(
            f"{router_file}: this {type(router).__name__} was trained without costs (e.g. its data "
            "had no costs.csv), and calibrating needs each model's cost: give a DATASET of "
            "held-out prompts with costs.csv, or with --output-tokens N to price calls from "
            "its models.json"
        )


def _check_models_match(router: BaseRouter, data: Outcomes, models: list[str] | None) -> None:
    """The dataset must hold outcomes for the models the router routes between."""
    wanted = models if models is not None else router.models
    missing = [m for m in wanted if m not in data.models]
    if missing:
        raise OutcomesError(
            f"the dataset has no outcomes for {missing}, which the router routes to; its models "
            f"are {list(data.models)} and the router's {router.models}: calibrate on data of "
            "the same models (or pick them with --models)",
            path=data.source,
        )
    extra = [m for m in data.models if m not in router.models]
    if models is None and extra:
        raise OutcomesError(
            f"the dataset has models the router does not know: {extra} (router: "
            f"{router.models}); calibrate on data of the router's models or pick them with "
            "--models",
            path=data.source,
        )


def _win_matrices_with_progress(router: BaseRouter, prompts: list[str], show: bool
                                ) -> np.ndarray:
    if not prompts:
        raise RouterConfigError("calibration needs at least one prompt")
    parts = []
    with tqdm(total=len(prompts), desc="score", unit="prompt", file=sys.stderr,
              disable=not show) as bar:
        for start in range(0, len(prompts), _CHUNK):
            chunk = prompts[start : start + _CHUNK]
            parts.append(router.win_matrices(chunk))
            bar.update(len(chunk))
    return np.concatenate(parts)


def _cmd_spend(args: argparse.Namespace) -> int:
    from .budgets._report import format_spend, spend_report

    print(format_spend(spend_report(args.store), as_json=args.json))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 langroute error, 2 usage error)."""
    try:
        return _run(argv)
    except BrokenPipeError:
        if not _stdout_reader_left():
            raise  # some other pipe or socket broke: not ours to hide
        # The reader of stdout left (`langroute spend --json | head`): stop quietly, as Unix
        # tools do, and point stdout at devnull so the interpreter's last flush cannot fail
        # again (Python's documented recipe, "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _stdout_reader_left() -> bool:
    """Whether stdout is a pipe whose reading end is closed (poll reports an error on it)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    if not hasattr(select, "poll"):  # no poll (Windows): take the documented recipe's view
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error (or --help/--version)
        return int(exc.code or 0)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    command = {"eval": _cmd_eval, "train": _cmd_train, "calibrate": _cmd_calibrate,
               "spend": _cmd_spend}[args.command]
    try:
        quiet_able = hasattr(args, "quiet")  # spend loads no model, so shows no bars
        with _library_progress_bars(_show_progress(args) if quiet_able else True):
            return command(args)
    except LangrouteError as exc:
        print(f"langroute {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
