"""APGR of SWRouter on RouteLLM's GSM8K and MMLU outcomes (50/50 splits, 5 seeds).

APGR is RouteLLM's average performance gap recovered: the area under
PGR(share) = (q(share) - q_weak) / (q_strong - q_weak) over the share of strong calls from 0 to
100 %, computed exactly from the ranking of P(strong beats weak) on the test half
(``langroute.evaluation.pgr_curve`` / ``apgr``). A random router scores 0.5.

Reported per dataset: the default ``SWRouter()``, RouteLLM's setting (gamma=10, no prior), and
a setting chosen per split by 3-fold cross-validation on the training half only (the CV-tuned
column equals the default with ``--no-cv``). The grid's
mean inner-CV APGR over both datasets and all seeds (training halves only) is printed too: it
is what the defaults are chosen from.

Run:  python benchmarks/bench_quality.py [--seeds 5] [--grid small|full]
MiniLM embeddings are cached on disk under .langroute-cache/ (first MMLU run: ~5 minutes).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from langroute._outcomes import Outcomes, load_outcomes  # noqa: E402
from langroute.embeddings import SentenceTransformerEmbedder  # noqa: E402
from langroute.evaluation import apgr, make_splits, pgr_curve  # noqa: E402
from langroute.routers import SWRouter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LANGROUTE_SHARED_DATA", ROOT.parent / "shared" / "data"))
CACHE = ROOT / ".langroute-cache" / "embeddings"
DATASETS = ("routellm-gsm8k", "routellm-mmlu")
ROUTELLM = {"gamma": 10.0, "prior": 0.0}


def grid(kind: str) -> list[dict]:
    gammas = [10.0, 1e2, 1e3, 1e4, 1e6] if kind == "small" else [10.0, 1e2, 1e3, 1e4, 1e5, 1e6,
                                                                   1e8]
    top_ks = [None, 50, 200]
    normalizes = [True, False]
    return [
        {"gamma": g, "top_k": k, "normalize": z}
        for g, k, z in itertools.product(gammas, top_ks, normalizes)
    ]


def strong_and_weak(data: Outcomes) -> tuple[int, int]:
    """Strong = the pricier model (gpt-4), weak = the cheaper one."""
    costs = data.mean_costs()
    assert costs is not None and len(data.models) == 2
    strong = int(np.argmax(costs))
    return strong, 1 - strong


def split_apgr(data: Outcomes, emb: np.ndarray, train: np.ndarray, test: np.ndarray,
               params: dict) -> float:
    strong, weak = strong_and_weak(data)
    router = SWRouter(**params).fit(data.subset(train), embeddings=emb[train])
    wins = router.win_matrices_from_embeddings(emb[test])
    p_strong = wins[:, strong, weak]
    shares, pgr = pgr_curve(p_strong, data.scores[test, weak], data.scores[test, strong])
    return apgr(shares, pgr)


def inner_cv(data: Outcomes, emb: np.ndarray, train: np.ndarray, configs: list[dict],
             seed: int) -> np.ndarray:
    """Mean 3-fold CV APGR of each config, using the training rows only."""
    folds = make_splits([data.prompts[i] for i in train], scheme="kfold", folds=3, seeds=[seed])
    out = np.zeros(len(configs))
    for fold in folds:
        tr, va = train[fold.train], train[fold.test]
        for c, params in enumerate(configs):
            out[c] += split_apgr(data, emb, tr, va, params) / len(folds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--grid", choices=("small", "full"), default="small")
    parser.add_argument("--no-cv", action="store_true", help="only the fixed settings")
    args = parser.parse_args()
    embedder = SentenceTransformerEmbedder(cache_dir=CACHE)
    configs = grid(args.grid)
    cv_scores = {}  # (dataset, seed) -> (n_configs,)
    rows = []
    for name in DATASETS:
        data = load_outcomes(DATA / name)
        start = time.perf_counter()
        emb = embedder.embed(data.prompts)
        print(f"{name}: {len(data)} prompts embedded in {time.perf_counter() - start:.1f} s",
              file=sys.stderr)
        for split in make_splits(data.prompts, scheme="halves", seeds=args.seeds):
            if args.no_cv:
                chosen = {}
            else:
                cv = inner_cv(data, emb, split.train, configs, split.seed)
                cv_scores[name, split.seed] = cv
                chosen = configs[int(np.argmax(cv))]
            rows.append({
                "dataset": name,
                "seed": split.seed,
                "default": split_apgr(data, emb, split.train, split.test, {}),
                "routellm": split_apgr(data, emb, split.train, split.test, ROUTELLM),
                "cv": split_apgr(data, emb, split.train, split.test, chosen),
                "chosen": chosen,
            })
            print(rows[-1], file=sys.stderr)
    if cv_scores:
        print_cv_table(cv_scores, configs)
    print(f"\nTest-half APGR ({args.seeds} seeds x 50/50 splits; random router = 0.5)")
    print(f"{'dataset':>16} {'SWRouter()':>12} {'RouteLLM SW':>12} {'CV-tuned':>12}")
    for name in DATASETS:
        mine = [r for r in rows if r["dataset"] == name]
        cells = []
        for key in ("default", "routellm", "cv"):
            values = np.array([r[key] for r in mine])
            cells.append(f"{values.mean():.4f}±{values.std():.3f}")
        print(f"{name:>16} " + " ".join(f"{c:>12}" for c in cells))
    print("\ndefaults:", {k: v for k, v in SWRouter().get_params().items() if k != "embedder"})


def print_cv_table(cv_scores: dict, configs: list[dict]) -> None:
    print("\nInner-CV APGR on training halves (mean over datasets and seeds), best first:")
    by_dataset = {
        name: np.mean([v for (d, _), v in cv_scores.items() if d == name], axis=0)
        for name in DATASETS
    }
    overall = np.mean(list(by_dataset.values()), axis=0)
    print(f"{'gamma':>8} {'top_k':>6} {'normalize':>9} " +
          " ".join(f"{n:>15}" for n in DATASETS) + f" {'mean':>7}")
    for c in np.argsort(-overall)[:12]:
        p = configs[c]
        print(f"{p['gamma']:>8.0e} {p['top_k']!s:>6} {p['normalize']!s:>9} " +
              " ".join(f"{by_dataset[n][c]:>15.4f}" for n in DATASETS) + f" {overall[c]:>7.4f}")


if __name__ == "__main__":
    main()
