"""What calibrating from kept out-of-fold scores saves, and what keeping them costs at fit time.

1. Calibration, before and after: a MiniLM SWRouter trained on routellm-gsm8k is saved, then
   loaded in a fresh state (empty embedding cache, as in a new process) and calibrated for
   ``strong_fraction=0.3`` two ways: on the 1,319 prompts (what users did before: embed every
   prompt again) and with ``prompts=None`` (the kept out-of-fold scores; nothing embedded).
2. Fit overhead: each router fitted on precomputed hashing embeddings (so only the routers'
   own work is timed) with and without the out-of-fold refits, on routellm-gsm8k (2 models)
   and zeroeval-gsm8k (17 models).

Writes ``benchmarks/results/calibration.{json,md}`` with the commit, command and machine facts.
Run with ``OPENBLAS_NUM_THREADS=1`` on a quiet machine for stable numbers:

    python benchmarks/bench_calibration.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _provenance import cpu_model, dirty_files, head_commit

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _machine() -> dict[str, Any]:
    cpu = cpu_model()
    import torch

    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "load_avg_1m_at_start": os.getloadavg()[0]}


def _commit() -> str:
    return head_commit() + (" (with uncommitted changes)" if dirty_files() else "")


def calibration_before_after(dataset: str) -> dict[str, Any]:
    from langroute import SWRouter, calibrate_threshold, load_outcomes, load_router

    outcomes = load_outcomes(DATA / dataset)
    router = SWRouter().fit(outcomes)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "router.safetensors"
        router.save(path)
        fresh = load_router(path)
        fresh.win_matrix("warm up: load the MiniLM weights outside the timings")
        started = time.perf_counter()
        before = calibrate_threshold(fresh, outcomes.prompts, strong_fraction=0.3)
        before_s = time.perf_counter() - started
        fresh = load_router(path)
        started = time.perf_counter()
        after = calibrate_threshold(fresh, strong_fraction=0.3)
        after_s = time.perf_counter() - started
    return {
        "dataset": dataset, "n_prompts": len(outcomes),
        "kept_scores": int(router.calibration_win_matrices_.shape[0]),
        "before_seconds": before_s, "before_threshold": before,
        "after_seconds": after_s, "after_threshold": after,
        "note": "before: scores the training prompts in-sample (what the README did); after: "
                "out-of-fold scores, so the thresholds differ",
    }


def fit_overhead(dataset: str, repeats: int) -> list[dict[str, Any]]:
    from langroute import load_outcomes
    from langroute.embeddings import HashingEmbedder
    from langroute.routers import (
        ClusterRouter,
        KNNRouter,
        MFRouter,
        SWRouter,
        calibration_scores_disabled,
    )

    outcomes = load_outcomes(DATA / dataset)
    embedder = HashingEmbedder(384)
    embedder.embed(list(outcomes.prompts))  # cached: the fits below never embed
    rows = []
    for make in (lambda: SWRouter(embedder), lambda: KNNRouter(embedder),
                 lambda: ClusterRouter(embedder, random_state=0),
                 lambda: MFRouter(embedder, random_state=0)):
        times = {"without": [], "with": []}
        for _ in range(repeats):
            started = time.perf_counter()
            with calibration_scores_disabled():
                make().fit(outcomes)
            times["without"].append(time.perf_counter() - started)
            started = time.perf_counter()
            fitted = make().fit(outcomes)
            times["with"].append(time.perf_counter() - started)
        kept = fitted.calibration_win_matrices_
        rows.append({
            "dataset": dataset, "router": type(fitted).__name__,
            "fit_seconds": float(np.median(times["without"])),
            "fit_with_calibration_seconds": float(np.median(times["with"])),
            "kept_shape": list(kept.shape), "kept_bytes": int(kept.nbytes),
        })
        print(rows[-1], file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    machine, commit = _machine(), _commit()
    started = time.perf_counter()
    before_after = calibration_before_after("routellm-gsm8k")
    print(before_after, file=sys.stderr)
    overhead = [row for name in ("routellm-gsm8k", "zeroeval-gsm8k")
                for row in fit_overhead(name, args.repeats)]
    result = {"command": "python " + " ".join(sys.argv), "commit": commit, "machine": machine,
              "calibration": before_after, "fit_overhead": overhead,
              "elapsed_seconds": time.perf_counter() - started}
    out = Path(args.out)
    (out / "calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    b = before_after
    lines = [
        "# Calibration from kept out-of-fold scores",
        "",
        f"`{result['command']}` at {commit}; {machine['cpus']} CPUs ({machine['cpu']}), load "
        f"{machine['load_avg_1m_at_start']:.1f} at start, torch {machine['torch']} "
        f"({machine['torch_threads']} threads), {machine['platform']}.",
        "",
        f"SWRouter (MiniLM) on {b['dataset']} ({b['n_prompts']} prompts), loaded from its file "
        "with an empty embedding cache, `strong_fraction=0.3`:",
        "",
        "| calibration | seconds | threshold |",
        "|---|---|---|",
        f"| before: `calibrate_threshold(router, prompts)` (embeds every prompt) | "
        f"{b['before_seconds']:.1f} | {b['before_threshold']:.4f} |",
        f"| after: `calibrate_threshold(router)` ({b['kept_scores']} kept scores) | "
        f"{b['after_seconds']:.4f} | {b['after_threshold']:.4f} |",
        "",
        f"Note: {b['note']}. The machine was shared (load average at start above); the "
        "before figure is embedding time and scales with the load.",
        "",
        "Fit time with and without the 5 out-of-fold refits (hashing embeddings precomputed, "
        f"median of {args.repeats}):",
        "",
        "| dataset | router | fit s | fit + calibration s | kept scores | kept MB |",
        "|---|---|---|---|---|---|",
    ]
    for row in overhead:
        lines.append(f"| {row['dataset']} | {row['router']} | {row['fit_seconds']:.2f} | "
                     f"{row['fit_with_calibration_seconds']:.2f} | "
                     f"{row['kept_shape'][0]} x {row['kept_shape'][1]}^2 | "
                     f"{row['kept_bytes'] / 1e6:.2f} |")
    (out / "calibration.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
