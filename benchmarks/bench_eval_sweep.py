"""Evaluate every router on every shared dataset; write one summary table (+ JSON).

    python benchmarks/bench_eval_sweep.py [--embedder minilm|hashing] [--folds 5]
                                          [--datasets a,b] [--routers sw,knn]

Writes ``benchmarks/results/eval_sweep.md`` and ``eval_sweep.json`` and prints the total wall
time (target: under 10 minutes on 2 CPU cores with MiniLM). One embedder instance serves every
dataset, router and fold, backed by the disk cache (``$LANGROUTE_EMBEDDING_CACHE`` or
``.langroute-cache/embeddings`` in the repository, shared with the other benchmarks), so a
second run embeds nothing.

Checks stated for every dataset: SWRouter's AIQ is at least the single-model hull's, and its
highest quality at least the best single model's; the table says where not, and why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LANGROUTE_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"


def _explain(name: str, report: dict) -> list[str]:
    """Why a router misses a check: the numbers, and whether folds disagree."""
    entry = report["routers"][name]
    comp = entry["comparisons"]
    base = report["baselines"]
    notes = []
    if not comp["aiq_at_least_hull"]:
        gap = comp["aiq_minus_hull"]
        within = abs(gap["mean"]) <= gap["std"]
        notes.append(
            f"AIQ {entry['metrics']['aiq']['mean']:.4f} < "
            f"hull {base['single_model_hull']['aiq']['mean']:.4f} "
            f"(gap {gap['mean']:+.4f} ± {gap['std']:.4f}"
            f"{', within fold noise' if within else ''})"
        )
    if not comp["max_quality_at_least_best_single"]:
        gap = comp["max_quality_minus_best_single"]
        tops = {tuple(f["routers"][name]["ladder"])[-1] for f in report["folds"]}
        best = set(base["best_single"]["models"])
        why = ""
        if tops != best:
            why = (f"; the router's top rung ({', '.join(sorted(tops))}, best on training folds) "
                   f"is not the best model on every test fold ({', '.join(sorted(best))})")
        notes.append(f"max quality {gap['mean']:+.4f} vs best single{why}")
    return notes


def _routers_for(names: list[str], n_prompts: int, folds: int) -> dict:
    """Router names, except that kNN's k is lowered to the smallest training fold.

    ``KNNRouter`` refuses a k larger than its training data (routellm-mtbench has 64 training
    prompts per fold); the sweep uses k = min(default, training prompts) there and says so.
    """
    from langroute import KNNRouter
    from langroute.evaluation import make_router

    smallest_train = n_prompts - -(-n_prompts // folds)
    out: dict = {}
    for name in names:
        if name == "knn" and smallest_train < KNNRouter().k:
            out[f"knn(k={smallest_train})"] = KNNRouter(k=smallest_train)
        else:
            out[name] = make_router(name)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embedder", choices=("minilm", "hashing"), default="minilm")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--datasets", help="comma-separated subset of ../shared/data")
    parser.add_argument("--routers", help="comma-separated router names (default: all available)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    from langroute import load_outcomes
    from langroute.embeddings import HashingEmbedder, SentenceTransformerEmbedder
    from langroute.evaluation import available_router_names, evaluate

    started = time.perf_counter()
    cache_dir = (os.environ.get("LANGROUTE_EMBEDDING_CACHE")
                 or REPO / ".langroute-cache" / "embeddings")
    embedder = (SentenceTransformerEmbedder(cache_dir=cache_dir) if args.embedder == "minilm"
                else HashingEmbedder(cache_dir=False))
    routers = args.routers.split(",") if args.routers else available_router_names()
    names = (args.datasets.split(",") if args.datasets
             else sorted(p.name for p in DATA.iterdir() if (p / "scores.csv").exists()))
    summary: dict = {"embedder": args.embedder, "folds": args.folds, "routers": routers,
                     "datasets": {}}
    rows, problems = [], []
    for name in names:
        t0 = time.perf_counter()
        outcomes = load_outcomes(DATA / name)
        report = evaluate(outcomes, _routers_for(routers, len(outcomes), args.folds),
                          embedder=embedder, folds=args.folds,
                          progress=not args.quiet and sys.stderr.isatty()).to_dict()
        seconds = time.perf_counter() - t0
        summary["datasets"][name] = {"seconds": seconds, "report": report}
        ds, base = report["dataset"], report["baselines"]
        for label, entry in report["routers"].items():
            m = entry["metrics"]
            apgr = m.get("apgr", {}).get("mean")
            match = m["cost_to_match_best"]
            rows.append([
                name, f"{ds['n_prompts']}x{len(ds['models'])}", label,
                f"{m['aiq']['mean']:.3f}", f"{base['single_model_hull']['aiq']['mean']:.3f}",
                f"{m['max_quality']['mean']:.3f}", f"{base['best_single']['quality']['mean']:.3f}",
                f"{base['oracle']['quality']['mean']:.3f}",
                "never" if match["mean"] is None else
                f"{100 * match['mean']:.0f}%" + (f" ({match['n_undefined']} never)"
                                                  if match["n_undefined"] else ""),
                "" if apgr is None else f"{apgr:.3f}",
                f"{m['fit_seconds']['mean'] + m['score_seconds']['mean']:.2f}",
            ])
            if label == "sw":  # the checks the issue sets are SWRouter's
                problems += [f"- **{name}** / sw: {note}" for note in _explain(label, report)]
        print(f"{name}: {seconds:.1f} s", file=sys.stderr)
    total = time.perf_counter() - started
    summary["total_seconds"] = total

    header = ["dataset", "prompts x models", "router", "AIQ", "hull AIQ", "max quality",
              "best single", "oracle", "cost to match best", "APGR", "s / fold"]
    lines = [
        "# Router evaluation sweep",
        "",
        f"{args.folds}-fold cross-validation (seed 0) on every dataset in `../shared/data`, "
        f"embedder `{args.embedder}`; means over folds. AIQ = RouterBench's area under the "
        "non-decreasing convex hull of the cost-quality curve over the single models' cost range; "
        "hull AIQ = the same for the single models (= best random routing). Cost to match best = "
        "cheapest threshold reaching the best single model's test quality, as a share of its cost. "
        "APGR for the two-model RouteLLM datasets (random = 0.5). "
        "s / fold = fit + score seconds per fold.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "## Checks (SWRouter: AIQ >= hull AIQ, max quality >= best single model)",
        "",
        *(problems or ["All checks pass on every dataset."]),
        "",
        f"Total wall time: {total:.0f} s ({len(names)} datasets x {len(routers)} routers x "
        f"{args.folds} folds).",
        "",
    ]
    table = "\n".join(lines)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "eval_sweep.md").write_text(table, encoding="utf-8")
    (args.results / "eval_sweep.json").write_text(json.dumps(summary, indent=1) + "\n",
                                                  encoding="utf-8")
    print(table)
    print(f"total wall time: {total:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
