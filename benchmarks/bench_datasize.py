"""Does a router get better with more training data? AIQ at 25%, 50% and 100% of each fold.

    python benchmarks/bench_datasize.py [--seeds 5] [--datasets a,b]

The online-learning target (``bench_learning.py``) asks the online router to end at least as
good as the static one trained on the first 25% of the training rows. A learner that converges
towards the router trained on *all* rows can only do that where more data does not lower the
router's AIQ, so this measures exactly that, on the same splits (5-fold x ``--seeds``, the
first x% of each shuffled training fold, as ``online_fold`` cuts its initial share), for both
routers with ``partial_fit`` at their defaults (kNN's k lowered to the training size where that
is smaller, as ``KNNRouter._calibration_clone`` does).

It also reports why SW may not improve: SW weighs *every* exemplar, ``gamma ** (s / max s - 1)``
relative to the nearest one, so the weight is spread like a fixed-width kernel and the
effective number of exemplars behind a decision, ``(sum w) ** 2 / sum w ** 2`` (median over up
to 300 test prompts per fold), grows with the data instead of staying local.

Writes ``benchmarks/results/datasize.md`` and ``datasize.json``. A diagnostic: no default is
chosen on it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _inputs import DATA, dataset_names, default_routers_aiq, minilm_embedder
from _paired import paired_difference
from _provenance import run_facts, write_results

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARES = (0.25, 0.5, 1.0)
ROUTERS = ("sw", "knn")
N_EFF_PROMPTS = 300


def _effective_exemplars(router, queries: np.ndarray) -> float:
    """Median over queries of SW's effective number of weighted exemplars."""
    weights = router.exemplar_weights_from_embeddings(queries)
    return float(np.median(weights.sum(axis=1) ** 2 / (weights**2).sum(axis=1)))


def run(name: str, embedder, seeds: int) -> dict:
    from langroute import load_outcomes
    from langroute.evaluation import fold_baselines, make_splits

    data = load_outcomes(DATA / name)
    aiq = {r: {s: [] for s in SHARES} for r in ROUTERS}
    n_eff = {s: [] for s in SHARES}
    for sp in make_splits(data.prompts, scheme="kfold", folds=5, seeds=seeds):
        train, test = data.subset(sp.train), data.subset(sp.test)
        base = fold_baselines(test.scores, test.costs, strong=None, weak=None)
        queries = np.asarray(embedder.embed(test.prompts[:N_EFF_PROMPTS]))
        for share in SHARES:
            rows = np.arange(max(2, int(round(share * len(train)))))
            sub = train.subset(rows)
            fitted: dict = {}
            for label, value in default_routers_aiq(embedder, sub, test, base, fitted).items():
                aiq[label][share].append(value)
            n_eff[share].append(_effective_exemplars(fitted["sw"], queries))
    return {"n_prompts": len(data), "n_models": len(data.models), "n_train": len(train),
            "aiq": {r: {str(s): v for s, v in by.items()} for r, by in aiq.items()},
            "sw_effective_exemplars": {str(s): v for s, v in n_eff.items()}}


def markdown(summary: dict) -> str:
    m = summary["machine"]
    lines = [
        "# More training data: does each router's AIQ rise?", "",
        f"Commit `{m['commit']}`; command `{m['command']}`; Python {m['python']}, numpy "
        f"{m['numpy']}, {m['platform']}, {m['cpus']} CPUs, OPENBLAS_NUM_THREADS="
        f"{m['openblas_threads']}; MiniLM embeddings; {summary['seeds']} seed(s) x 5 folds; "
        f"total {summary['seconds']:.0f} s.", "",
        "Each router fitted on the first 25%, 50% and 100% of each training fold (the online "
        "benchmark's cut), AIQ on the held-out fold, mean over folds; `100% - 25%` with the "
        "paired standard error and the folds where it is >= 0. `SW effective exemplars`: "
        "median over test prompts of `(sum w)^2 / sum w^2` of SW's weights, mean over folds. "
        "A diagnostic, no default is chosen on it.", "",
        "| dataset | prompts x models | router | AIQ 25% | AIQ 50% | AIQ 100% | 100% - 25% "
        "(s.e.) | folds >= | SW effective exemplars 25% / 50% / 100% (training rows at 100%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary["datasets"].items():
        eff = entry["sw_effective_exemplars"]
        for router in ROUTERS:
            values = {s: np.asarray(v) for s, v in entry["aiq"][router].items()}
            diff, se = paired_difference(values["0.25"], values["1.0"])
            effs = (" / ".join(f"{np.mean(eff[s]):.0f}" for s in ("0.25", "0.5", "1.0"))
                    + f" ({entry['n_train']})") if router == "sw" else "-"
            lines.append(
                f"| {name} | {entry['n_prompts']}x{entry['n_models']} | {router} | "
                + " | ".join(f"{values[s].mean():.4f}" for s in ("0.25", "0.5", "1.0"))
                + f" | {diff.mean():+.4f} ({se:.4f}) | {int((diff >= 0).sum())}/{len(diff)} "
                f"| {effs} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--datasets", help="comma-separated subset of the shared datasets")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    started = time.perf_counter()
    embedder = minilm_embedder()
    names = dataset_names(args.datasets)
    datasets = {}
    for name in names:
        t0 = time.perf_counter()
        entry = run(name, embedder, args.seeds)
        entry["seconds"] = time.perf_counter() - t0
        datasets[name] = entry
        print(f"{name}: {entry['seconds']:.0f} s", file=sys.stderr, flush=True)
    summary = {"machine": run_facts(), "seeds": args.seeds, "datasets": datasets,
               "seconds": time.perf_counter() - started}
    write_results(args.results, "datasize", markdown(summary), summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
