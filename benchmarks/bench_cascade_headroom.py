"""How much room is there? The best agreement cascade on a whole dataset, chosen in-sample.

    python benchmarks/bench_cascade_headroom.py [--datasets zeroeval-gsm8k] [--max-verifiers 3]

The zeroeval-gsm8k target asks for the best single model's quality at <= 25% of its cost. This
searches, on *all* prompts at once (in-sample: the choice sees the prompts it is scored on, so
it is an upper bound on what cross-validation can find), every agreement cascade of the shape
the issue describes: one cheaper model answers, 1 to ``--max-verifiers`` other cheaper models
answer too, the answer is kept when at least ``need`` of them give the same final answer
(``answers.csv``), otherwise the best model answers; every call is paid for. It reports the
best quality each verifier count reaches within 25% of the best model's cost, against that
model's quality, and how many configurations were searched. Compare with
``benchmarks/results/cascade.md``, where every choice is made on training folds and read on
test folds. A diagnostic: nothing is chosen on it.

Writes ``benchmarks/results/cascade_headroom.md``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np
from _provenance import run_facts, write_report

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LANGROUTE_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
BUDGET = 0.25


def headroom(name: str, max_verifiers: int) -> list[str]:
    from langroute import load_outcomes

    data = load_outcomes(DATA / name)
    if data.answers is None or data.costs is None:
        raise SystemExit(f"{name} has no answers.csv or no costs")
    scores, costs = data.scores, data.costs
    answers = np.asarray(data.answers, dtype=object)
    models = list(data.models)
    model_q, model_c = scores.mean(axis=0), costs.mean(axis=0)
    best = int(np.lexsort((model_c, -model_q))[0])
    cheaper = [j for j in range(len(models)) if model_c[j] < model_c[best]]
    found: dict[int, tuple] = {}
    searched = 0
    for cheap in cheaper:
        others = [j for j in cheaper if j != cheap]
        for size in range(1, max_verifiers + 1):
            for verifiers in itertools.combinations(others, size):
                agree = np.stack([answers[:, v] == answers[:, cheap] for v in verifiers],
                                 axis=1).sum(axis=1)
                checked = costs[:, cheap] + costs[:, list(verifiers)].sum(axis=1)
                for need in range(1, size + 1):
                    searched += 1
                    kept = agree >= need
                    cost = float((checked + np.where(kept, 0.0, costs[:, best])).mean())
                    if cost > BUDGET * model_c[best]:
                        continue
                    quality = float(np.where(kept, scores[:, cheap], scores[:, best]).mean())
                    if size not in found or quality > found[size][0]:
                        found[size] = (quality, cost, cheap, verifiers, need)
    lines = [f"### {name}", "",
             f"Best single model: {models[best]}, quality {model_q[best]:.4f} "
             f"({round(model_q[best] * len(data))}/{len(data)}); {searched} configurations "
             "searched.", ""]
    if not found:
        return lines + ["No configuration costs 25% of the best model's or less.", ""]
    lines += ["| verifiers | best quality within 25% of its cost | minus the best model (pts) "
             "| prompts | cost share | cheap model | verifiers | kept when agreeing |",
              "|---|---|---|---|---|---|---|---|"]
    for size in sorted(found):
        quality, cost, cheap, verifiers, need = found[size]
        gap = quality - model_q[best]
        lines.append(
            f"| {size} | {quality:.4f} | {100 * gap:+.2f} | {round(gap * len(data)):+d} | "
            f"{100 * cost / model_c[best]:.1f}% | {models[cheap]} | "
            f"{', '.join(models[v] for v in verifiers)} | {need} of {size} |")
    return lines + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="zeroeval-gsm8k")
    parser.add_argument("--max-verifiers", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    body = []
    for name in args.datasets.split(","):
        body += headroom(name, args.max_verifiers)
    facts = run_facts()
    text = "\n".join([
        "# In-sample headroom of agreement cascades at 25% of the best model's cost", "",
        f"Commit `{facts['commit']}`; command `{facts['command']}`; Python {facts['python']}, "
        f"numpy {facts['numpy']}; {time.perf_counter() - started:.0f} s.", "",
        "Every cascade of one cheaper model checked by 1 to "
        f"{args.max_verifiers} other cheaper models (kept when at least `need` give the same "
        "final answer, otherwise the best model answers; every call paid), searched on all "
        "prompts at once: an in-sample upper bound on what choices made on training folds can "
        "reach on test folds (`cascade.md`). A diagnostic, nothing is chosen on it.", "",
        *body])
    write_report(args.results, "cascade_headroom", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
