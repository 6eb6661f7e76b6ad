"""Decision latency of SWRouter: p50/p99 per request, memory, approximation error, RouteLLM ratio.

Sections (each prints a table):

1. Synthetic exemplars (random unit vectors, 384-d like MiniLM; 0/1 scores for 2 models,
   continuous scores for 10 and 20 models, where win-count patterns do not compress), for
   10k / 100k / 1M exemplars: fit time, bytes held by the router, RSS growth, and the latency of
   one decision (``win_matrices_from_embeddings`` on one embedded prompt) with the default
   ``algorithm="auto"`` (exact up to 20k exemplars, clustered above) and with ``exact``.
2. The same decisions with RouteLLM's per-battle fit (``benchmarks/routellm_reference.py``:
   cosine weights for every battle, then scikit-learn's logistic regression over all battles),
   where it fits in memory, and the ratio.
3. Clustered vs exact on real prompts (MiniLM embeddings of RouteLLM's MMLU outcomes, 14k
   prompts, forced into the clustered index): max |dP|, and agreement of routing decisions at
   thresholds 0.3..0.7; plus the recall of the probed clusters (share of the true 50 nearest
   exemplars they contain).
4. End to end with the default MiniLM embedder (fresh prompts, no cache) at 100k x 10 models.

BLAS runs single-threaded (``OPENBLAS_NUM_THREADS=1`` unless set): on this 2-core machine a
multi-threaded small matrix-vector product can take ~12 ms when the other core is busy. The
same holds for torch: section 4 reports MiniLM with 1 thread and with torch's default.

Run:  python benchmarks/bench_latency.py [--quick] [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.routellm_reference import (  # noqa: E402
    battles_from_scores,
    routellm_sw_ratings,
    routellm_weights,
)
from langroute._outcomes import Outcomes, load_outcomes  # noqa: E402
from langroute.embeddings import SentenceTransformerEmbedder  # noqa: E402
from langroute.routers import SWRouter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LANGROUTE_SHARED_DATA", ROOT.parent / "shared" / "data"))
CACHE = ROOT / ".langroute-cache" / "embeddings"
DIM = 384


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), DIM), dtype=np.float32)
        out[start : start + block.shape[0]] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def synthetic_outcomes(rng: np.random.Generator, n: int, m: int) -> Outcomes:
    if m == 2:
        scores = (rng.random((n, m)) < np.array([0.8, 0.6])).astype(np.float64)
    else:
        scores = rng.random((n, m))
    ids = [str(i) for i in range(n)]
    return Outcomes(ids=ids, prompts=ids, models=tuple(f"m{j}" for j in range(m)), scores=scores)


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def time_decisions(router: SWRouter, queries: np.ndarray) -> tuple[float, float]:
    router.win_matrices_from_embeddings(queries[:1])  # warm up
    times = []
    for q in queries:
        start = time.perf_counter()
        router.win_matrices_from_embeddings(q[None])
        times.append(time.perf_counter() - start)
    return percentiles(times)


def section_synthetic(sizes: list[int], models: list[int], n_queries: int) -> None:
    print("\n## 1-2. Decision latency excluding the embedding (one prompt per call)")
    print(f"{'exemplars':>9} {'models':>6} {'algo':>9} {'store':>8} {'fit s':>7} "
          f"{'MB held':>8} {'RSS+MB':>7} {'p50 ms':>8} {'p99 ms':>8} {'max|dP|':>8} "
          f"{'RouteLLM p50 ms':>16} {'ratio':>7}")
    rng = np.random.default_rng(0)
    for n in sizes:
        embeddings = unit_rows(rng, n)
        queries = unit_rows(rng, n_queries)
        for m in models:
            data = synthetic_outcomes(rng, n, m)
            results = {}
            for algorithm in ("auto", "exact"):
                if algorithm == "exact" and results["auto"][0].algorithm_ == "exact":
                    break
                gc.collect()
                before = rss_bytes()
                start = time.perf_counter()
                router = SWRouter(algorithm=algorithm).fit(data, embeddings=embeddings)
                fit_s = time.perf_counter() - start
                grown = (rss_bytes() - before) / 1e6
                # Exact scoring of 1M exemplars takes ~0.1-1 s a request: fewer repetitions.
                reps = queries if router.algorithm_ == "clustered" or n <= 100_000 else queries[:10]
                p50, p99 = time_decisions(router, reps)
                results[algorithm] = (router, fit_s, grown, p50, p99)
            error = ""
            if "exact" in results:
                check = queries[:10]
                error = np.abs(results["auto"][0].win_matrices_from_embeddings(check)
                               - results["exact"][0].win_matrices_from_embeddings(check)).max()
                error = f"{error:8.1e}"
            for algorithm, (router, fit_s, grown, p50, p99) in results.items():
                held = (router.index_.nbytes + router.store_.nbytes) / 1e6
                ref = ratio = ""
                if algorithm == "auto" and n * m * (m - 1) // 2 <= 500_000:
                    ref_p50 = time_routellm(data, embeddings, queries[:3])
                    ref, ratio = f"{ref_p50:16.0f}", f"{ref_p50 / p50:7.0f}"
                print(f"{n:>9} {m:>6} {router.algorithm_:>9} {router.store_.kind:>8} "
                      f"{fit_s:7.1f} {held:8.0f} {grown:7.0f} {p50:8.2f} {p99:8.2f} "
                      f"{error if algorithm == 'auto' else '':>8} {ref:>16} {ratio:>7}",
                      flush=True)
            del results, router, data
        del embeddings


def time_routellm(data: Outcomes, embeddings: np.ndarray, queries: np.ndarray) -> float:
    """p50 ms of RouteLLM's per-request work: weight every battle, fit logistic regression.

    RouteLLM keeps one float64 embedding per battle; here battles share their prompt's row
    (fewer bytes to scan, so this favours RouteLLM).
    """
    battles = battles_from_scores(data.scores)
    exemplars = embeddings.astype(np.float64)
    times = []
    for q in queries.astype(np.float64):
        start = time.perf_counter()
        weights = routellm_weights(exemplars, q)
        routellm_sw_ratings(battles, weights[battles.exemplar])
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def section_real_error(n_queries: int) -> None:
    print("\n## 3. Clustered vs exact on real prompts (routellm-mmlu, MiniLM, 2 models)")
    data = load_outcomes(DATA / "routellm-mmlu")
    emb = SentenceTransformerEmbedder(cache_dir=CACHE).embed(data.prompts)
    rng = np.random.default_rng(1)
    test = rng.choice(len(data), size=n_queries, replace=False)
    train = np.setdiff1d(np.arange(len(data)), test)
    strong = int(np.argmax(data.mean_costs()))
    exact = SWRouter().fit(data.subset(train), embeddings=emb[train])
    p_exact = exact.win_matrices_from_embeddings(emb[test])
    sims = emb[test] @ emb[train].T
    true_near = np.argsort(-sims, axis=1)[:, :50]
    print(f"{'n_probe':>7} {'clusters':>8} {'max|dP|':>9} {'mean|dP|':>9} "
          f"{'agree@.3..7':>12} {'recall@50':>9} {'p50 ms':>7}")
    for n_probe in (4, 8, 16, 32):
        approx = SWRouter(algorithm="clustered", n_probe=n_probe).fit(
            data.subset(train), embeddings=emb[train]
        )
        p_approx = approx.win_matrices_from_embeddings(emb[test])
        d = np.abs(p_approx - p_exact)
        ps_e, ps_a = p_exact[:, strong, 1 - strong], p_approx[:, strong, 1 - strong]
        agree = np.mean([np.mean((ps_e >= t) == (ps_a >= t)) for t in np.linspace(0.3, 0.7, 41)])
        index = approx.index_
        recall = []
        position = np.empty(len(train), dtype=np.int64)
        position[index.order] = np.arange(len(train))
        for row, q in enumerate(emb[test]):
            _, _, members, _ = index.probe(q, n_probe, 0)
            recall.append(np.isin(position[true_near[row]], members).mean())
        p50, _ = time_decisions(approx, emb[test][:200])
        print(f"{n_probe:>7} {index.means.shape[0]:>8} {d.max():9.2e} {d.mean():9.2e} "
              f"{agree:12.4f} {np.mean(recall):9.3f} {p50:7.2f}", flush=True)


def section_end_to_end(n: int, m: int, n_queries: int) -> None:
    print(f"\n## 4. Including the MiniLM embedding ({n} exemplars x {m} models, fresh prompts)")
    rng = np.random.default_rng(2)
    router = SWRouter(SentenceTransformerEmbedder(cache_dir=False)).fit(
        synthetic_outcomes(rng, n, m), embeddings=unit_rows(rng, n)
    )
    words = "the a model prompt route cost quality answer question maths code poem".split()
    router.win_matrix("warm up the model")
    import torch

    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        times = []
        for i in range(n_queries):
            prompt = " ".join(rng.choice(words, size=12)) + f" {threads}-{i}"
            start = time.perf_counter()
            router.win_matrix(prompt)
            times.append(time.perf_counter() - start)
        p50, p99 = percentiles(times)
        print(f"torch threads {threads}: embedding + decision p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"({router.algorithm_})", flush=True)
    torch.set_num_threads(default_threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--models", default="2,10,20")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip", default="", help="comma list of sections to skip: 1,3,4")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"numpy {np.__version__}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
          f"{os.cpu_count()} CPUs")
    if "1" not in skip:
        section_synthetic([int(s) for s in args.sizes.split(",")],
                          [int(s) for s in args.models.split(",")], args.queries)
    if "3" not in skip:
        section_real_error(1000)
    if "4" not in skip:
        section_end_to_end(100_000, 10, 100)


if __name__ == "__main__":
    main()
