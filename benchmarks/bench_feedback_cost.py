"""What learning one feedback event costs as a router grows: ``partial_fit`` of one prompt.

    python benchmarks/bench_feedback_cost.py [--sizes 10000,50000,100000] [--events 20]
        [--pools 0,10000,100000] [--out benchmarks/results]

``record_feedback`` embeds the prompt, turns the score into battles (``feedback_training``)
and calls the router's ``partial_fit`` (outside the routing lock, on a copy swapped in under
it); this times that last step, the one that grows with the router, on synthetic unit
exemplars (384-d, the MiniLM width; 2 models with binary scores, stored as patterns; 10 models
with continuous scores, stored as per-exemplar counts), one event at a time, embedding
excluded. Each event is a score of one model turned into feedback battles, as
``record_feedback`` makes them. Per size: SWRouter with ``algorithm="auto"`` (``exact`` up to
``EXACT_MAX_WORK``, ``clustered`` beyond), whose feedback joins its feedback pool, and
KNNRouter, whose feedback joins its exemplars. Reports the median and the largest of
``--events`` consecutive events, and the fit time for scale. Then what the feedback pool adds
to a decision: SWRouter's scoring of one request (median over 50 requests) with 10,000 fitted
exemplars and ``--pools`` feedback exemplars, searched as the router does (an exact scan up to
``EXACT_MAX_WORK``, its feedback index beyond) and by an exact scan, with the recall of the
100 feedback neighbours it counts against the exact scan's. Run with
``OPENBLAS_NUM_THREADS=1`` like the other benchmarks.

Writes ``feedback_cost.md`` and ``feedback_cost.json`` to ``--out`` (``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
from _provenance import run_facts, write_results

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DIM = 384


def _outcomes(n: int, n_models: int, seed: int):
    """Synthetic outcomes whose prompts are their ids (embeddings are given separately)."""
    from langroute import Outcomes

    rng = np.random.default_rng(seed)
    if n_models == 2:
        scores = rng.integers(0, 2, size=(n, n_models)).astype(float)
    else:
        scores = np.round(rng.random((n, n_models)), 2)
    ids = [f"p{i}" for i in range(n)]
    costs = np.tile(np.geomspace(1e-5, 1e-2, n_models), (n, 1))
    return Outcomes(ids=ids, prompts=ids, models=tuple(f"m{j}" for j in range(n_models)),
                    scores=scores, costs=costs)


def _lookup_embedder(vectors: np.ndarray):
    """An embedder that returns prompt ``p{i}``'s row of ``vectors`` (the exemplars are
    synthetic; no model runs, and nothing is cached)."""
    from langroute import Embedder

    class Lookup(Embedder):
        kind = "bench-lookup"

        def __init__(self) -> None:
            super().__init__(cache_size=0, cache_dir=False)

        @property
        def dimension(self) -> int:
            return DIM

        def get_config(self) -> dict:
            return {}

        def _embed_batch(self, texts: list[str]) -> np.ndarray:
            return vectors[[int(text[1:]) for text in texts]]

    return Lookup()


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def run(size: int, n_models: int, router_name: str, events: int) -> dict:
    from langroute import KNNRouter, SWRouter
    from langroute.feedback import DecisionRecord, FeedbackEvent, feedback_training
    from langroute.feedback._learning import learn_battles
    from langroute.routers._calibration_scores import calibration_scores_disabled

    rng = np.random.default_rng(size + n_models)
    data = _outcomes(size + events, n_models, seed=size)
    vectors = _unit(rng, size + events)
    make = {"sw": SWRouter, "knn": KNNRouter}[router_name]
    with calibration_scores_disabled():  # the fit's out-of-fold refits are not timed here
        started = time.perf_counter()
        router = make(_lookup_embedder(vectors)).fit(data.subset(np.arange(size)))
        fit_seconds = time.perf_counter() - started
        times = []
        models = list(router.models)
        for i in range(size, size + events):
            chosen = models[i % n_models]
            decision = DecisionRecord(f"d{i}", data.prompts[i], chosen, tuple(models))
            score = float(data.scores[i, i % n_models])
            battles, weight = feedback_training(
                [FeedbackEvent(f"d{i}", "score", chosen, score)], {f"d{i}": decision}, router)
            started = time.perf_counter()
            learn_battles(router, battles, weight, embeddings=vectors[i:i + 1])
            times.append(time.perf_counter() - started)
    return {"exemplars": size, "models": n_models, "router": router_name,
            "algorithm": getattr(router, "algorithm_", "-"), "fit_s": fit_seconds,
            "median_ms": 1000 * float(np.median(times)), "max_ms": 1000 * float(max(times))}


def _pool_vectors(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Feedback exemplars or requests. ``uniform``: random unit vectors, with no structure
    (every neighbour about as far as any row, the index's worst case); ``topics``: around
    1,000 fixed random directions (same-topic cosine about 0.5), as prompts group by subject."""
    if kind == "uniform":
        return _unit(rng, n)
    centres = _unit(np.random.default_rng(11), 1000)
    vectors = centres[rng.integers(0, 1000, n)] + _unit(rng, n)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def decision_with_pool(pools: list[int], size: int = 10_000, requests: int = 50) -> list[dict]:
    """SWRouter's time to score one request (win counts from its embedding) as its feedback
    pool grows, searched as the router does and by an exact scan, and the recall of the
    feedback neighbours it counts (the exact scan's 100 nearest it finds); synthetic
    feedback battles, 2 models, median and mean over ``requests`` requests."""
    from langroute import Battles, SWRouter
    from langroute.routers._calibration_scores import calibration_scores_disabled
    from langroute.routers._incremental import FEEDBACK_SOURCE

    rows = []
    for kind in ("uniform", "topics"):
        rng = np.random.default_rng(7)
        data = _outcomes(size, 2, seed=7)
        vectors = _unit(rng, size)
        with calibration_scores_disabled():
            router = SWRouter(_lookup_embedder(vectors), algorithm="exact").fit(data)
        for pool in pools:
            more = pool - router.n_feedback_
            if more > 0:
                router.partial_fit(Battles(
                    prompts=[f"f{i}" for i in range(more)], models=tuple(router.models),
                    prompt_index=np.arange(more), model_a=np.zeros(more, int),
                    model_b=np.ones(more, int), result=rng.random(more),
                    source=FEEDBACK_SOURCE), embeddings=_pool_vectors(rng, more, kind))
            exact = copy.copy(router)
            exact._feedback_index = None  # the same pool, scanned exactly
            queries = _pool_vectors(rng, requests, kind).astype(np.float32)
            row = {"exemplars": size, "feedback": pool, "pool": kind,
                   "search": "exact" if router.feedback_index_ is None else "index"}
            for name, scorer in (("median_ms", router), ("exact_ms", exact)):
                times = []
                for query in queries:
                    started = time.perf_counter()
                    scorer.weighted_counts_from_embeddings(query)
                    times.append(time.perf_counter() - started)
                row[name] = 1000 * float(np.median(times))
            if router.feedback_index_ is not None:
                # what the event that (re)builds the index pays: k-means over the whole pool
                from langroute.routers._pool_index import PoolIndex

                started = time.perf_counter()
                PoolIndex.build(router.feedback_embeddings_, router.random_state)
                row["index_build_s"] = time.perf_counter() - started
            if pool:
                # what the approximation changes in the decision: P(row model beats column)
                moved = np.abs(router.win_matrices_from_embeddings(queries)
                               - exact.win_matrices_from_embeddings(queries))
                row["max_dp"] = float(moved.max())
                found = router._feedback_neighbours(queries)[1]
                wanted = exact._feedback_neighbours(queries)[1]
                row["recall"] = float(np.mean([np.intersect1d(a, b).size / b.size
                                               for a, b in zip(found, wanted, strict=True)]))
            rows.append(row)
            print(row, flush=True)
    return rows


def real_prompt_pool(requests: int = 50, seed: int = 5) -> dict | None:
    """The pool index on real prompts: every distinct prompt of the shared datasets (MiniLM),
    all but ``requests`` of them fed back as feedback exemplars, the index forced at that size
    (the shared data hold fewer prompts than the exact budget), the held-out ones as requests.
    Feedback battles between 2 models with random outcomes, 2,000 fitted exemplars from the
    same prompts. Recall and max |dP| against an exact scan of the same pool; None without the
    shared data."""
    from unittest import mock

    from _inputs import DATA, dataset_names, minilm_embedder

    from langroute import Battles, SWRouter, load_outcomes
    from langroute.routers import _sw
    from langroute.routers._calibration_scores import calibration_scores_disabled
    from langroute.routers._incremental import FEEDBACK_SOURCE

    if not DATA.is_dir():
        return None
    prompts = sorted({prompt for name in dataset_names(None)
                      for prompt in load_outcomes(DATA / name).prompts})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(prompts))
    asked, pooled = order[:requests], order[requests:]
    vectors = minilm_embedder().embed(prompts)
    fitted = pooled[:2000]
    data = _outcomes(len(fitted), 2, seed=seed)
    with calibration_scores_disabled():
        router = SWRouter(_lookup_embedder(vectors[fitted]), algorithm="exact").fit(
            data, embeddings=vectors[fitted])
    with mock.patch.object(_sw, "EXACT_MAX_WORK", 0):  # force the index at this pool size
        router.partial_fit(Battles(
            prompts=[f"f{i}" for i in range(len(pooled))], models=tuple(router.models),
            prompt_index=np.arange(len(pooled)), model_a=np.zeros(len(pooled), int),
            model_b=np.ones(len(pooled), int), result=rng.random(len(pooled)),
            source=FEEDBACK_SOURCE), embeddings=vectors[pooled])
    exact = copy.copy(router)
    exact._feedback_index = None
    queries = vectors[asked]
    found = router._feedback_neighbours(queries)[1]
    wanted = exact._feedback_neighbours(queries)[1]
    moved = np.abs(router.win_matrices_from_embeddings(queries)
                   - exact.win_matrices_from_embeddings(queries))
    return {"prompts": len(prompts), "feedback": len(pooled), "requests": requests,
            "clusters": int(router.feedback_index_.centroids.shape[0]),
            "n_probe": router.n_probe,
            "recall": float(np.mean([np.intersect1d(a, b).size / b.size
                                     for a, b in zip(found, wanted, strict=True)])),
            "max_dp": float(moved.max())}


def render(summary: dict) -> str:
    facts = summary
    lines = [
        "# Cost of learning one feedback event (`partial_fit` of one prompt)", "",
        f"Commit `{facts['commit']}`; command `{facts['command']}`; Python {facts['python']}, "
        f"numpy {facts['numpy']}, {facts['cpus']} CPUs, "
        f"OPENBLAS_NUM_THREADS={facts['openblas_threads']}; {summary['events']} consecutive "
        "events per row, embedding excluded; synthetic 384-d unit exemplars.", "",
        "| exemplars | models | router | index | fit (s) | per event: median (ms) | "
        "per event: max (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary["rows"]:
        lines.append(f"| {row['exemplars']} | {row['models']} | {row['router']} | "
                     f"{row['algorithm']} | {row['fit_s']:.1f} | {row['median_ms']:.1f} | "
                     f"{row['max_ms']:.1f} |")
    lines += ["", "SWRouter scoring one request (median over 50 requests) as its feedback pool "
              "grows; the feedback neighbours' recall is the share of the exact scan's 100 "
              "nearest the router counts (mean over the requests), `max abs dP` the largest "
              "change of a win probability against the exact scan. `uniform`: random unit "
              "vectors, no structure (the index's worst case); `topics`: around 1,000 random "
              "directions. `index build` is the k-means over the whole pool that the event "
              "crossing the exact budget, and then each event doubling the pool, pays "
              "(inside its `partial_fit`, on the staged copy, outside the routing lock).", "",
              "| fitted exemplars | feedback exemplars | pool | search | decision: median (ms) "
              "| exact scan: median (ms) | neighbour recall | max abs dP | index build (s) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["pool"]:
        recall = f"{row['recall']:.3f}" if "recall" in row else "-"
        build = f"{row['index_build_s']:.1f}" if "index_build_s" in row else "-"
        dp = f"{row['max_dp']:.1e}" if "max_dp" in row else "-"
        lines.append(f"| {row['exemplars']} | {row['feedback']} | {row['pool']} | "
                     f"{row['search']} | {row['median_ms']:.2f} | {row['exact_ms']:.2f} | "
                     f"{recall} | {dp} | {build} |")
    real = summary.get("real_prompts")
    if real:
        lines += ["", f"The index on real prompts: the {real['prompts']} distinct prompts of the "
                  f"shared datasets (MiniLM), {real['feedback']} of them as feedback exemplars "
                  f"(the index forced at that size: {real['clusters']} clusters, n_probe "
                  f"{real['n_probe']}), the other {real['requests']} as requests: neighbour "
                  f"recall {real['recall']:.3f}, max abs dP {real['max_dp']:.1e}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000,100000")
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--pools", default="0,10000,100000",
                        help="feedback pool sizes of the decision table")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for n_models in (2, 10):
            for router_name in ("sw", "knn"):
                rows.append(run(size, n_models, router_name, args.events))
                print(rows[-1], flush=True)
    pool = decision_with_pool([int(p) for p in args.pools.split(",")])
    real = real_prompt_pool()
    print(real, flush=True)
    summary = {**run_facts(), "events": args.events, "rows": rows, "pool": pool,
               "real_prompts": real}
    write_results(args.out, "feedback_cost", render(summary), summary)


if __name__ == "__main__":
    main()
