"""Nested cross-validation of every router on every shared dataset; one table, JSON and a plot.

    nice -n 10 python benchmarks/bench_eval_sweep.py [--datasets a,b] [--routers sw,knn]
        [--folds 5] [--seeds 2] [--tune-max-prompts 1000] [--embedder minilm|hashing]
        [--contrastive-datasets routellm-gsm8k]

Every router is a ``TunedRouter`` (``langroute/evaluation/_tuning.py``): inside each outer fold
its hyperparameters are chosen by inner 3-fold cross-validation on that fold's training prompts
only (grids fixed a priori in ``DEFAULT_GRIDS``), then refitted on all of them; the stacked
ensemble fits its combination weights on out-of-fold predictions of the training prompts. No
figure is measured on prompts that chose a setting. To bound the time, the inner search uses at
most ``--tune-max-prompts`` training prompts per outer fold (only routellm-mmlu, 11k training
prompts per fold, is subsampled at the default 1000, as are routerbench-slice's 2520 and the
two GSM8K sets' 1055); the final refit always uses all of them. Results are rewritten after
every dataset, so an interrupted run leaves the datasets it finished. Every figure is a mean
(± std) over the outer folds of ``--seeds`` repetitions of the outer split (seeds 0..n-1).

``contrastive`` (``ContrastiveRouter``: MiniLM fine-tuned on pairs of training prompts, then
the tuned SW on the fine-tuned embeddings) fine-tunes inside every outer fold, a few CPU
minutes per dataset and seed, so the sweep runs it only on ``--contrastive-datasets``
(routellm-gsm8k, the dataset of the APGR target), with the small budget
``CONTRASTIVE_BUDGET`` fixed a priori (not tuned).

Writes ``benchmarks/results/eval_sweep.{md,json,png}``. The JSON records the commit, the command,
the machine, the embedder and every fold's metrics; ``tests/unit_tests/quality/`` checks that
the README's table is the one rendered from it. Embeddings come from the disk cache
(``$LANGROUTE_EMBEDDING_CACHE`` or ``.langroute-cache/embeddings``); torch runs on one thread
(on a shared 2-core machine more threads only contend).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _provenance import cpu_model, dirty_files, head_commit

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LANGROUTE_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
ROUTERS = ("sw", "knn", "cluster", "mf", "irt", "avengers", "stacked", "contrastive")
#: Fine-tuning budget of ``contrastive`` in the sweep, fixed a priori for CPU time: 256 pairs
#: (half positives), 16 pairs a step, one epoch, 128 tokens, AdamW at 5e-5.
CONTRASTIVE_BUDGET = {"pairs": 256, "batch_size": 16, "epochs": 1, "max_seq_length": 128}
CONTRASTIVE_DATASETS = ("routellm-gsm8k",)
PLOT_DATASETS = ("alpacaeval2", "routellm-gsm8k")


# -- provenance --------------------------------------------------------------------------------
def provenance(argv: list[str]) -> dict[str, Any]:
    """Commit, command and machine facts recorded with every results file."""
    import numpy
    import torch

    cpu = cpu_model()
    return {
        "commit": head_commit(),
        "dirty_files": dirty_files(),
        "command": "python " + " ".join(argv),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu,
            "cpu_count": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()),
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "nice": os.nice(0),
        },
    }


# -- the table ---------------------------------------------------------------------------------
def _pm(stat: dict[str, Any], digits: int = 3) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _match(stat: dict[str, Any]) -> str:
    n = len(stat["folds"])
    if stat["mean"] is None:
        return f"never ({n}/{n})"
    text = f"{100 * stat['mean']:.0f}%"
    return text + (f" (never {stat['n_undefined']}/{n})" if stat["n_undefined"] else "")


def _quality(stat: dict[str, Any] | None) -> str:
    if stat is None or stat["mean"] is None:
        return "-"
    n = len(stat["folds"])
    return f"{stat['mean']:.3f}" + (f" ({stat['n_undefined']}/{n} n/a)"
                                     if stat["n_undefined"] else "")


def _chosen(fold_params: list[dict[str, Any]]) -> str:
    """The chosen hyperparameters over the outer folds, most frequent first."""
    counts = Counter(json.dumps(p, sort_keys=True) for p in fold_params if p)
    if not counts:
        return ""
    parts = []
    for text, k in counts.most_common():
        params = json.loads(text)
        parts.append(" ".join(f"{key}={value:g}" if isinstance(value, float) else
                              f"{key}={value}" for key, value in params.items()) + f" ×{k}")
    return "; ".join(parts)


TABLE_HEADER = ["dataset", "router", "AIQ", "hull AIQ", "max quality", "best single",
                "cost to match best", "quality @50% cost", "quality @70% cost", "APGR",
                "chosen (outer folds)"]


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    """One row per dataset x router, rendered from the results JSON (README and .md share it)."""
    rows = []
    for name, entry in summary["datasets"].items():
        report = entry["report"]
        base = report["baselines"]
        for label, router in report["routers"].items():
            m = router["metrics"]
            rows.append([
                name, label, _pm(m["aiq"]), f"{base['single_model_hull']['aiq']['mean']:.3f}",
                f"{m['max_quality']['mean']:.3f}", f"{base['best_single']['quality']['mean']:.3f}",
                _match(m["cost_to_match_best"]), _quality(m.get("quality_at_50pct_cost")),
                _quality(m.get("quality_at_70pct_cost")),
                _pm(m["apgr"]) if "apgr" in m else "",
                _chosen(entry["chosen"].get(label, [])),
            ])
    return rows


def render_table(summary: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(summary)]
    return "\n".join(lines)


def ranking(summary: dict[str, Any]) -> dict[str, Any]:
    """Per router: datasets where AIQ >= hull and max quality >= best single, mean AIQ gap,
    datasets matching the best single model at <= 70% of its cost; sorted best first (routers
    evaluated on every dataset first, then those run on only some, e.g. ``contrastive``)."""
    out: dict[str, dict[str, Any]] = {}
    n_total = len(summary["datasets"])
    for name, entry in summary["datasets"].items():
        report = entry["report"]
        hull = report["baselines"]["single_model_hull"]["aiq"]["mean"]
        best = report["baselines"]["best_single"]["quality"]["mean"]
        for label, router in report["routers"].items():
            m = router["metrics"]
            r = out.setdefault(label, {"n_datasets": 0, "aiq_at_least_hull": 0,
                                       "max_at_least_best": 0, "match_at_70pct": 0,
                                       "aiq_gaps": {}, "apgr": {}})
            r["n_datasets"] += 1
            gap = m["aiq"]["mean"] - hull
            r["aiq_gaps"][name] = gap
            r["aiq_at_least_hull"] += gap >= -1e-12
            r["max_at_least_best"] += m["max_quality"]["mean"] >= best - 1e-12
            match = m["cost_to_match_best"]
            r["match_at_70pct"] += (match["mean"] is not None and match["n_undefined"] == 0
                                    and match["mean"] <= 0.70)
            if "apgr" in m:
                r["apgr"][name] = m["apgr"]["mean"]
    for r in out.values():
        r["mean_aiq_gap"] = sum(r["aiq_gaps"].values()) / len(r["aiq_gaps"])
    order = sorted(out, key=lambda k: (out[k]["n_datasets"] < n_total,
                                       -out[k]["aiq_at_least_hull"],
                                       -out[k]["max_at_least_best"], -out[k]["mean_aiq_gap"]))
    return {label: out[label] for label in order}


APGR_AIMS = {"routellm-gsm8k": 0.67, "routellm-mmlu": 0.68}


def render_summary(summary: dict[str, Any]) -> str:
    """Ranking of the routers, the chosen default and the issue's targets, from the JSON."""
    ranked = summary["ranking"]
    lines = [
        "| router | AIQ >= hull | max quality >= best single | matches best at <= 70% cost | "
        "mean AIQ - hull | " + " | ".join(f"APGR {name}" for name in APGR_AIMS) + " |",
        "|---|---|---|---|---|" + "---|" * len(APGR_AIMS),
    ]
    for label, r in ranked.items():
        k = r["n_datasets"]
        apgrs = " | ".join(f"{r['apgr'][name]:.3f}" if name in r["apgr"] else "-"
                           for name in APGR_AIMS)
        lines.append(f"| {label} | {r['aiq_at_least_hull']}/{k} | {r['max_at_least_best']}/{k} "
                     f"| {r['match_at_70pct']}/{k} | {r['mean_aiq_gap']:+.4f} | {apgrs} |")
    best = summary["default_router"]
    r = ranked[best]
    n = r["n_datasets"]
    apgr = ", ".join(
        f"{name} {r['apgr'][name]:.3f} (aim {aim})"
        for name, aim in APGR_AIMS.items() if name in r["apgr"]
    )
    lines += [
        "",
        f"Ranked by datasets with AIQ >= hull, then max quality >= best single, then mean AIQ "
        f"gap (among the routers evaluated on every dataset), the default router is `{best}`: "
        f"AIQ >= hull on {r['aiq_at_least_hull']}/{n}, "
        f"max quality >= best single on {r['max_at_least_best']}/{n}, best single matched at "
        f"<= 70% of its cost on {r['match_at_70pct']}/{n} (aim 4/8)"
        + (f"; APGR {apgr}" if apgr else "") + ".",
        "",
        f"Whole nested sweep: {summary['total_seconds'] / 60:.1f} min wall, "
        f"{summary['total_cpu_seconds'] / 60:.1f} min CPU "
        f"(load average {summary['machine']['load_average_at_start'][0]:.1f} at start on "
        f"{summary['machine']['cpu_count']} cores), embeddings from the disk cache.",
    ]
    return "\n".join(lines)


# -- plot --------------------------------------------------------------------------------------
def plot(summary: dict[str, Any], router: str, datasets: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from langroute.evaluation import convex_hull_nondecreasing

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5))
    for ax, name in zip(np.atleast_1d(axes), datasets, strict=True):
        report = summary["datasets"][name]["report"]
        base = report["baselines"]
        curve = report["routers"][router]["curve"]
        cost = np.array(curve["cost"], dtype=float)
        q = np.array([np.nan if v is None else v for v in curve["quality_mean"]], dtype=float)
        ax.plot(cost, q, color="C0", label=f"{router} (nested CV, mean of folds)")
        singles = base["single_models"]
        sc = np.array([v["cost"]["mean"] for v in singles.values()])
        sq = np.array([v["quality"]["mean"] for v in singles.values()])
        ax.scatter(sc, sq, color="grey", s=14, label="single models")
        hx, hy = convex_hull_nondecreasing(sc, sq)
        # The hull is linear in cost: sample it densely so it is drawn right on a log axis.
        dense = np.geomspace(hx[0], sc.max(), 400)
        ax.plot(dense, np.interp(dense, hx, hy), color="grey", ls="--",
                label="single-model hull (= random routing)")
        ax.scatter([base["oracle"]["cost"]["mean"]], [base["oracle"]["quality"]["mean"]],
                   color="C3", marker="*", s=120, label="oracle")
        ax.axhline(base["best_single"]["quality"]["mean"], color="C2", lw=0.8, ls=":",
                   label="best single model")
        ax.set_xscale("log")
        ax.set_xlabel("mean USD per call")
        ax.set_ylabel("mean quality")
        ax.set_title(name)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main --------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embedder", choices=("minilm", "hashing"), default="minilm")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=2,
                        help="repetitions of the outer split (seeds 0..n-1)")
    parser.add_argument("--contrastive-datasets", default=",".join(CONTRASTIVE_DATASETS),
                        help="datasets on which the contrastive router runs (comma-separated)")
    parser.add_argument("--datasets", help="comma-separated subset of ../shared/data")
    parser.add_argument("--routers", help=f"comma-separated (default {','.join(ROUTERS)})")
    parser.add_argument("--tune-max-prompts", type=int, default=1000)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--rerender", action="store_true",
                        help="only rewrite the .md and plot from the results JSON of a run")
    args = parser.parse_args()
    if args.rerender:
        summary = json.loads((args.results / "eval_sweep.json").read_text(encoding="utf-8"))
        print(write_files(summary, args.results))
        return 0

    import torch

    torch.set_num_threads(1)
    from langroute import load_outcomes
    from langroute.embeddings import HashingEmbedder, SentenceTransformerEmbedder
    from langroute.evaluation import evaluate, tuned_router

    facts = provenance(sys.argv)
    started = time.perf_counter()
    cpu_started = time.process_time()
    cache_dir = (os.environ.get("LANGROUTE_EMBEDDING_CACHE")
                 or REPO / ".langroute-cache" / "embeddings")
    # Explicitly MiniLM (not the package default embedder, which may change).
    embedder = (SentenceTransformerEmbedder("all-MiniLM-L6-v2", cache_dir=cache_dir)
                if args.embedder == "minilm" else HashingEmbedder(cache_dir=False))
    routers = args.routers.split(",") if args.routers else list(ROUTERS)
    names = (args.datasets.split(",") if args.datasets
             else sorted((p.name for p in DATA.iterdir() if (p / "scores.csv").exists()),
                         key=lambda n: (n == "routellm-mmlu", n)))
    summary: dict[str, Any] = {
        **facts,
        "embedder": {"kind": embedder.kind, **embedder.get_config()},
        "folds": args.folds, "seeds": args.seeds, "inner_folds": 3,
        "tune_max_prompts": args.tune_max_prompts, "routers": routers,
        "contrastive_datasets": [n for n in args.contrastive_datasets.split(",") if n],
        "contrastive_budget": CONTRASTIVE_BUDGET, "datasets": {},
    }
    for name in names:
        t0 = time.perf_counter()
        outcomes = load_outcomes(DATA / name)
        templates = {
            r: tuned_router(r, CONTRASTIVE_BUDGET if r == "contrastive" else None, embedder,
                            max_tune_prompts=args.tune_max_prompts)
            for r in routers
            if r != "contrastive" or name in summary["contrastive_datasets"]
        }
        report = evaluate(outcomes, templates, embedder=embedder, folds=args.folds,
                          seeds=args.seeds,
                          progress=not args.quiet and sys.stderr.isatty()).to_dict()
        seconds = time.perf_counter() - t0
        summary["datasets"][name] = {"seconds": seconds, "report": report,
                                     "chosen": _chosen_from_report(report)}
        print(f"{name}: {seconds:.1f} s", file=sys.stderr, flush=True)
        md = write_results(summary, args, facts, started, cpu_started, names, routers)
    print(md)
    print(f"total wall time: {summary['total_seconds']:.1f} s", file=sys.stderr)
    return 0


def write_results(summary: dict[str, Any], args: argparse.Namespace, facts: dict[str, Any],
                  started: float, cpu_started: float, names: list[str],
                  routers: list[str]) -> str:
    """Rank, plot and write the .md/.json/.png for the datasets finished so far."""
    summary["total_seconds"] = time.perf_counter() - started
    summary["total_cpu_seconds"] = time.process_time() - cpu_started
    summary["n_datasets_planned"] = len(names)
    return write_files(summary, args.results)


def write_files(summary: dict[str, Any], results: Path) -> str:
    """Rank the routers, choose the default, write ``eval_sweep.{md,json,png}``; returns the md.

    Everything is rendered from ``summary`` (the JSON), so ``--rerender`` rewrites the .md and
    the plot from a finished run without recomputing it.
    """
    summary["ranking"] = ranking(summary)
    n_done = len(summary["datasets"])
    best = next(label for label, r in summary["ranking"].items() if r["n_datasets"] == n_done)
    summary["default_router"] = best

    results.mkdir(parents=True, exist_ok=True)
    plot_names = tuple(n for n in PLOT_DATASETS if n in summary["datasets"])
    if plot_names:
        plot(summary, best, plot_names, results / "eval_sweep.png")
    folds, seeds = summary["folds"], summary.get("seeds", 1)
    md = "\n".join([
        "# Router evaluation sweep (nested cross-validation)",
        "",
        f"{folds}-fold outer CV x {seeds} seeds of the outer split "
        f"({folds * seeds} evaluations per dataset); inside each outer fold every "
        f"hyperparameter is chosen by 3-fold CV on that fold's training prompts only (at most "
        f"{summary['tune_max_prompts']} of them for the search). Embedder: "
        f"`{summary['embedder']}`. Mean ± std over outer folds x seeds; \"never k/n\" counts "
        f"them. `contrastive` runs on {', '.join(summary['contrastive_datasets']) or 'none'} "
        f"only, with the fine-tuning budget `{summary['contrastive_budget']}` fixed a priori.",
        "",
        render_table(summary),
        "",
        render_summary(summary),
        "",
        f"Datasets finished: {n_done} of {summary.get('n_datasets_planned', n_done)}; routers: "
        f"{', '.join(summary['routers'])}.",
        "",
        f"Commit `{summary['commit']}` ({len(summary['dirty_files'])} files modified), command "
        f"`{summary['command']}`, {summary['machine']['cpu_count']} CPUs "
        f"({summary['machine']['cpu']}), load average at start "
        f"{summary['machine']['load_average_at_start'][0]:.1f}, {summary['date_utc']}.",
        "",
    ])
    (results / "eval_sweep.md").write_text(md, encoding="utf-8")
    (results / "eval_sweep.json").write_text(json.dumps(summary, indent=1) + "\n",
                                             encoding="utf-8")
    return md


def _chosen_from_report(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per router, the hyperparameters each outer fold's TunedRouter chose."""
    out: dict[str, list[dict[str, Any]]] = {}
    for fold in report["folds"]:
        for label, metrics in fold["routers"].items():
            out.setdefault(label, []).append(metrics.get("best_params", {}))
    return out


if __name__ == "__main__":
    sys.exit(main())
