"""Decision latency: embedders, the SW router's index, and RouteLLM's per-battle reference.

Sections (each prints a table; ``--sections`` picks them):

1. ``index``: synthetic exemplars (random unit vectors, 384-d like MiniLM; 0/1 scores for 2
   models, continuous scores for 10 and 20, where win-count patterns do not compress), for
   10k / 100k / 1M exemplars: fit time, bytes held, RSS growth, and the latency of one decision
   (``win_matrices_from_embeddings`` on one embedded prompt), exact and clustered. RouteLLM's
   per-battle fit (``benchmarks/routellm_reference.py``: cosine weights for every battle, then
   scikit-learn's logistic regression) is timed on ``--reference-queries`` (>= 30) queries
   where it fits in memory, and compared exact-vs-exact beside clustered-vs-exact.
2. ``real``: clustered vs exact on real prompts (MiniLM embeddings of RouteLLM's MMLU outcomes,
   forced into the clustered index): max |dP|, decision agreement at thresholds 0.3..0.7, and
   recall of the probed clusters.
3. ``embedders``: per embedder, a router of 100k synthetic exemplars x 10 models: load time of
   a saved router in a fresh process (imports, file, model, warm-up), memory held, p50/p99 of a
   single decision with the embedding of a fresh prompt included, and throughput of batches of
   64 fresh prompts (``win_matrices``) on 2 cores (2 worker processes, one thread each).
4. ``quality``: per embedder and shared dataset, 5-fold CV of ``SWRouter()`` with its fixed
   defaults (AIQ; APGR on the two-model sets), via ``langroute.evaluate``.

Threads: BLAS, torch and ONNX Runtime run one thread per process (``OPENBLAS_NUM_THREADS=1``
unless set): on this shared 2-core machine a multi-threaded small product can take ~12 ms when
the other core is busy. ``--out`` writes the tables with the commit, command, machine facts and
load average to a results file.

Run:  python benchmarks/bench_latency.py [--sections index,real,embedders,quality]
          [--sizes 10000,100000,1000000] [--out benchmarks/results/latency.md]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Distilled / exported models live with the other benchmark caches (built once, offline).
os.environ.setdefault("LANGROUTE_ARTIFACTS", str(Path(__file__).resolve().parents[1]
                                                 / ".langroute-cache" / "artifacts"))

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _provenance import cpu_model, dirty_files, head_commit

from benchmarks.routellm_reference import (  # noqa: E402
    battles_from_scores,
    routellm_sw_ratings,
    routellm_weights,
)
from langroute._outcomes import Outcomes, load_outcomes  # noqa: E402
from langroute.embeddings import (  # noqa: E402
    Embedder,
    HashingEmbedder,
    OnnxMiniLMEmbedder,
    SentenceTransformerEmbedder,
    StaticEmbedder,
)
from langroute.routers import SWRouter, calibration_scores_disabled, load_router  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LANGROUTE_SHARED_DATA", ROOT.parent / "shared" / "data"))
CACHE = ROOT / ".langroute-cache" / "embeddings"
DIM = 384
DATASETS = ("routellm-gsm8k", "routellm-mmlu", "routellm-mtbench", "zeroeval-gsm8k",
            "zeroeval-math-l5", "zeroeval-crux", "alpacaeval2", "routerbench-slice")
WORDS = ("the a model prompt route cost quality answer question maths code poem solve write "
         "explain why how many train river city proof function list story").split()


def make_embedder(name: str, *, cache: bool = False) -> Embedder:
    """The embedders compared; ``cache`` keeps vectors on disk (quality runs only)."""
    cache_dir = CACHE if cache else False
    if name == "minilm-torch":
        return SentenceTransformerEmbedder(cache_dir=cache_dir)
    if name == "minilm-onnx-int8":
        return OnnxMiniLMEmbedder(cache_dir=cache_dir)
    if name == "model2vec-256":
        return StaticEmbedder(cache_dir=cache_dir)
    if name == "hashing-256":
        return HashingEmbedder(256, cache_dir=cache_dir)
    raise ValueError(f"unknown embedder {name!r}")


EMBEDDERS = ("minilm-torch", "minilm-onnx-int8", "model2vec-256", "hashing-256")


def one_thread() -> None:
    """One torch thread, if torch is loaded (ONNX Runtime: ``num_threads=1`` by default)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        out[start : start + block.shape[0]] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def synthetic_outcomes(rng: np.random.Generator, n: int, m: int) -> Outcomes:
    if m == 2:
        scores = (rng.random((n, m)) < np.array([0.8, 0.6])).astype(np.float64)
    else:
        scores = rng.random((n, m))
    ids = [str(i) for i in range(n)]
    return Outcomes(ids=ids, prompts=ids, models=tuple(f"m{j}" for j in range(m)), scores=scores)


def fresh_prompts(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=12)) + f" {seed}-{i}" for i in range(n)]


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


# -- 1. the index ---------------------------------------------------------------------------------
def section_index(sizes: list[int], models: list[int], n_queries: int, n_reference: int) -> None:
    print("\n## 1. Decision latency excluding the embedding (one prompt per call)\n")
    print(f"RouteLLM's per-battle reference timed on {n_reference} queries; 'exact/exact' is "
          "its p50 over our exact p50, 'ref/clustered' over our clustered p50.\n")
    print(f"{'exemplars':>9} {'models':>6} {'algo':>9} {'store':>8} {'fit s':>7} "
          f"{'MB held':>8} {'RSS+MB':>7} {'p50 ms':>8} {'p99 ms':>8} {'max|dP|':>8} "
          f"{'RouteLLM p50 ms':>16} {'exact/exact':>11} {'ref/clustered':>13}")
    rng = np.random.default_rng(0)
    for n in sizes:
        embeddings = unit_rows(rng, n)
        queries = unit_rows(rng, n_queries)
        for m in models:
            data = synthetic_outcomes(rng, n, m)
            results = {}
            for algorithm in ("clustered", "exact"):
                if algorithm == "clustered" and n <= 20_000:
                    continue  # "auto" is exact up to 20k exemplars
                gc.collect()
                before = rss_bytes()
                start = time.perf_counter()
                with calibration_scores_disabled():
                    router = SWRouter(algorithm=algorithm).fit(data, embeddings=embeddings)
                fit_s = time.perf_counter() - start
                grown = (rss_bytes() - before) / 1e6
                # Exact scoring of 1M exemplars takes ~0.1-1 s a request: fewer repetitions.
                reps = queries if algorithm == "clustered" or n <= 100_000 else queries[:30]
                p50, p99 = time_decisions(router, reps)
                results[algorithm] = (router, fit_s, grown, p50, p99)
            error = ""
            if len(results) == 2:
                check = queries[:10]
                error = np.abs(results["clustered"][0].win_matrices_from_embeddings(check)
                               - results["exact"][0].win_matrices_from_embeddings(check)).max()
                error = f"{error:8.1e}"
            ref_p50 = None
            if n * m * (m - 1) // 2 <= 500_000:
                ref_p50 = time_routellm(data, embeddings, queries[:n_reference])
            for algorithm, (router, fit_s, grown, p50, p99) in results.items():
                held = (router.index_.nbytes + router.store_.nbytes) / 1e6
                ref = ee = rc = ""
                if ref_p50 is not None:
                    ref = f"{ref_p50:16.0f}"
                    if algorithm == "exact":
                        ee = f"{ref_p50 / p50:11.0f}"
                    else:
                        rc = f"{ref_p50 / p50:13.0f}"
                print(f"{n:>9} {m:>6} {router.algorithm_:>9} {router.store_.kind:>8} "
                      f"{fit_s:7.1f} {held:8.0f} {grown:7.0f} {p50:8.2f} {p99:8.2f} "
                      f"{error if algorithm == 'clustered' else '':>8} {ref:>16} {ee:>11} "
                      f"{rc:>13}", flush=True)
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


# -- 2. clustered vs exact on real prompts --------------------------------------------------------
def section_real_error(n_queries: int) -> None:
    print("\n## 2. Clustered vs exact on real prompts (routellm-mmlu, MiniLM, 2 models)\n")
    data = load_outcomes(DATA / "routellm-mmlu")
    emb = SentenceTransformerEmbedder(cache_dir=CACHE).embed(data.prompts)
    rng = np.random.default_rng(1)
    test = rng.choice(len(data), size=n_queries, replace=False)
    train = np.setdiff1d(np.arange(len(data)), test)
    strong = int(np.argmax(data.mean_costs()))
    with calibration_scores_disabled():
        exact = SWRouter().fit(data.subset(train), embeddings=emb[train])
    p_exact = exact.win_matrices_from_embeddings(emb[test])
    sims = emb[test] @ emb[train].T
    true_near = np.argsort(-sims, axis=1)[:, :50]
    print(f"{'n_probe':>7} {'clusters':>8} {'max|dP|':>9} {'mean|dP|':>9} "
          f"{'agree@.3..7':>12} {'recall@50':>9} {'p50 ms':>7}")
    for n_probe in (4, 8, 16, 32):
        with calibration_scores_disabled():
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


# -- 3. embedders end to end ----------------------------------------------------------------------
def build_router_file(name: str, path: Path, n: int, m: int) -> SWRouter:
    """A 100k x 10 router on synthetic exemplars in ``name``'s vector space, saved to ``path``."""
    embedder = make_embedder(name)
    rng = np.random.default_rng(2)
    with calibration_scores_disabled():
        router = SWRouter(embedder).fit(
            synthetic_outcomes(rng, n, m), embeddings=unit_rows(rng, n, embedder.dimension)
        )
    router.save(path)
    return router


def child_load(path: str) -> None:
    """In a fresh process: load the router file (warm-up included), report as JSON."""
    base = rss_bytes()
    imported = time.perf_counter()
    router = load_router(path)
    one_thread()
    loaded = time.perf_counter()
    prompt = fresh_prompts(99, 1)[0]
    start = time.perf_counter()
    router.win_matrix(prompt)
    first = time.perf_counter() - start
    held = (router.index_.nbytes + router.store_.nbytes) / 1e6
    print(json.dumps({
        "load_s": loaded - imported,
        "router_load_seconds_": router.load_seconds_, "first_decision_ms": first * 1e3,
        "router_mb": held, "rss_mb": rss_bytes() / 1e6, "rss_growth_mb": (rss_bytes() - base) / 1e6,
    }))


def _throughput_worker(path: str, seed: int, n_batches: int, start_at: float, queue) -> None:
    one_thread()
    router = load_router(path)
    batches = [fresh_prompts(seed * 1000 + b, 64) for b in range(n_batches)]
    router.win_matrices(fresh_prompts(seed * 1000 + 999, 64))  # warm
    while time.time() < start_at:
        time.sleep(0.001)
    begin = time.perf_counter()
    for batch in batches:
        router.win_matrices(batch)
    queue.put((begin, time.perf_counter(), 64 * n_batches))


def throughput(path: Path, workers: int, n_batches: int) -> float:
    """Decisions per second of ``workers`` processes deciding batches of 64 fresh prompts."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 60.0  # every worker loaded and warm before the clock starts
    procs = [ctx.Process(target=_throughput_worker, args=(str(path), w, n_batches, start_at,
                                                          queue)) for w in range(workers)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    total = sum(r[2] for r in results)
    # Each worker timed itself; the slowest defines the wall time of the whole job.
    return total / max(r[1] - r[0] for r in results)


def section_embedders(names: list[str], n: int, m: int, n_queries: int, n_batches: int) -> dict:
    print(f"\n## 3. Embedders end to end ({n} synthetic exemplars x {m} models, fresh prompts)\n")
    print("process: a fresh Python starting, importing, loading and deciding once; load: "
          "load_router alone (file, model, warm-up);\n1st: the first decision after it; "
          "p50/p99: one "
          "decision, embedding included, 1 thread;\nthroughput: batches of 64, 2 processes x 1 "
          "thread; MB: router arrays held / process RSS after load.\n")
    print(f"{'embedder':>18} {'dim':>4} {'process s':>9} {'load s':>7} {'1st ms':>7} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'decisions/s':>11} {'router MB':>9} {'RSS MB':>7}")
    folder = ROOT / ".langroute-cache" / "bench-routers"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    one_thread()
    for name in names:
        path = folder / f"{name}-{n}x{m}.safetensors"
        router = build_router_file(name, path, n, m)
        started = time.perf_counter()
        child = subprocess.run([sys.executable, __file__, "--child-load", str(path)],
                               capture_output=True, text=True, check=True)
        loaded = json.loads(child.stdout.strip().splitlines()[-1])
        loaded["process_s"] = time.perf_counter() - started
        router.warm_up()
        times = []
        for prompt in fresh_prompts(1, n_queries):
            start = time.perf_counter()
            router.win_matrix(prompt)
            times.append(time.perf_counter() - start)
        p50, p99 = percentiles(times)
        rate = throughput(path, 2, n_batches)
        row = {**loaded, "dimension": router._resolve_embedder().dimension, "p50_ms": p50,
               "p99_ms": p99, "decisions_per_s": rate, "algorithm": router.algorithm_}
        out[name] = row
        print(f"{name:>18} {row['dimension']:>4} {row['process_s']:9.2f} {row['load_s']:7.2f} "
              f"{row['first_decision_ms']:7.1f} {p50:7.2f} {p99:7.2f} {rate:11.0f} "
              f"{row['router_mb']:9.0f} {row['rss_mb']:7.0f}", flush=True)
        if name == names[-1]:
            # What the index alone allows: batches of 64 precomputed embeddings, one thread.
            queries = unit_rows(np.random.default_rng(5), 64 * n_batches, row["dimension"])
            start = time.perf_counter()
            for b in range(n_batches):
                router.win_matrices_from_embeddings(queries[b * 64 : (b + 1) * 64])
            alone = 64 * n_batches / (time.perf_counter() - start)
            out["index_alone_decisions_per_s_1_thread"] = alone
            print(f"\nThe decision alone (embedding excluded, {router.algorithm_} index, batches "
                  f"of 64, 1 thread): {alone:.0f} decisions/s", flush=True)
        del router
        gc.collect()
    return out


# -- 4. quality -----------------------------------------------------------------------------------
def section_quality(names: list[str], datasets: list[str], seeds: int) -> dict:
    from langroute.evaluation import evaluate

    print("\n## 4. Routing quality per embedder: SWRouter() defaults (fixed, not tuned here), "
          f"5-fold CV x {seeds} seeds\n")
    print("AIQ on every dataset; APGR too on the two-model ones. Mean over folds and seeds; "
          "(+-x): difference to minilm-torch.\n")
    one_thread()
    out: dict = {}
    for dataset in datasets:
        data = load_outcomes(DATA / dataset)
        for name in names:
            started = time.perf_counter()
            report = evaluate(data, {"sw": SWRouter(make_embedder(name, cache=True))}, folds=5,
                              seeds=seeds, progress=False)
            metrics = {"aiq": report.metric("sw", "aiq")}
            if len(data.models) == 2:
                metrics["apgr"] = report.metric("sw", "apgr")
            out.setdefault(dataset, {})[name] = metrics
            print(f"{dataset:>18} {name:>18} " + " ".join(
                f"{k} {v:.4f}" for k, v in metrics.items()) +
                f"   ({time.perf_counter() - started:.0f} s)", flush=True)
    print("\n" + quality_table(out, names))
    return out


def quality_table(quality: dict, names: list[str]) -> str:
    """Markdown: dataset x embedder, AIQ (APGR), difference to minilm-torch in brackets."""
    lines = ["| dataset | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for dataset, row in quality.items():
        ref = row.get("minilm-torch", {})
        cells = []
        for name in names:
            metrics = row.get(name)
            if metrics is None:
                cells.append("")
                continue
            text = []
            for key in ("aiq", "apgr"):
                if key in metrics and metrics[key] is not None:
                    delta = ""
                    if name != "minilm-torch" and ref.get(key) is not None:
                        delta = f" ({metrics[key] - ref[key]:+.3f})"
                    text.append(f"{key.upper()} {metrics[key]:.3f}{delta}")
            cells.append("<br>".join(text))
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- results file ---------------------------------------------------------------------------------
def machine_facts() -> dict:
    def version(name: str) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as v

        try:
            return v(name)
        except PackageNotFoundError:
            return "absent"

    cpu = cpu_model("unknown")
    return {
        "commit": head_commit(),
        "dirty": bool(dirty_files()),
        "python": platform.python_version(), "cpu": cpu, "cpus": os.cpu_count(),
        "numpy": np.__version__, "torch": version("torch"), "onnxruntime": version("onnxruntime"),
        "model2vec": version("model2vec"), "OPENBLAS_NUM_THREADS":
        os.environ.get("OPENBLAS_NUM_THREADS"), "nice": os.nice(0),
    }


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="index,real,embedders,quality")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--models", default="2,10,20")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--reference-queries", type=int, default=30)
    parser.add_argument("--embedders", default=",".join(EMBEDDERS))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--exemplars", type=int, default=100_000, help="section 3's router")
    parser.add_argument("--seeds", type=int, default=3, help="CV repetitions (quality)")
    parser.add_argument("--batches", type=int, default=30, help="batches of 64 per worker")
    parser.add_argument("--out", type=Path, default=None, help="write a results file (.md)")
    parser.add_argument("--child-load", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_load:
        child_load(args.child_load)
        return
    if args.reference_queries < 30:
        parser.error("--reference-queries must be >= 30")
    sections = set(filter(None, args.sections.split(",")))
    names = args.embedders.split(",")
    buffer = io.StringIO()
    facts = machine_facts()
    load_before = os.getloadavg()
    started = time.time()
    results: dict = {}
    with contextlib.redirect_stdout(_Tee(sys.stdout, buffer)):
        print(f"numpy {np.__version__}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']},"
              f" {os.cpu_count()} CPUs, load average {load_before}")
        if "index" in sections:
            section_index([int(s) for s in args.sizes.split(",")],
                          [int(s) for s in args.models.split(",")], args.queries,
                          args.reference_queries)
        if "real" in sections:
            section_real_error(1000)
        if "embedders" in sections:
            results["embedders"] = section_embedders(names, args.exemplars, 10, args.queries,
                                                     args.batches)
        if "quality" in sections:
            results["quality"] = section_quality(names, args.datasets.split(","), args.seeds)
    if args.out is not None:
        facts.update(load_average_before=load_before, load_average_after=os.getloadavg(),
                     minutes=round((time.time() - started) / 60, 1))
        command = "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]])
        env = " ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"))
        text = (f"# Latency benchmark\n\ncommand: `{env} {command}`\n\n"
                f"machine: `{json.dumps(facts)}`\n\n```\n{buffer.getvalue()}```\n")
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"command": command, "machine": facts, **results}, indent=1))
        print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
