"""Cascades against routing alone, 5-fold x several seeds, every choice on the training folds.

    python benchmarks/bench_cascade.py [--embedder minilm|hashing] [--folds 5] [--seeds 6]
                                       [--datasets a,b]

For every dataset in ``../shared/data`` this runs ``langroute.evaluate`` with SWRouter and the
offline cascades (``langroute.evaluation._cascade``): the agreement scorer on the zeroeval-*
sets (which record every model's final answer), RouterBench's simulated scorer with a 10% error
rate elsewhere (labelled simulated; it makes no call, so its checking costs nothing).

Each cascade row is run once per target, its configuration chosen on the training folds for
that target, from candidate grids fixed a priori (``GRIDS_FIXED``; see the module docstring of
``langroute.evaluation._cascade``):

* ``match``: reach the best single model's training quality at the lowest training cost;
* ``budget@0.5`` / ``budget@0.75``: the highest training quality within 50% / 75% of the best
  model's training cost;
* ``match@0.98``: reach 98% of its quality at the lowest training cost;
* ``budget@0.25``: the highest training quality within 25% of the best model's training cost,
  the objective of the zeroeval-gsm8k target ("the best model's quality at <= 25% of its cost").

**The zeroeval-gsm8k target's selection was changed after a miss, and is confirmed on fresh
splits.** Until commit 707891c the target was judged on the configuration chosen by ``match``
(the cheapest to reach the best model's training quality). On seeds 0-2 that missed
(``benchmarks/results/cascade.md`` at 707891c: 29% ± 31, n/a in 2/15): ``match`` prefers a
configuration that barely reaches parity on the training folds over one that clears it within
the 25% the target allows, and parity on training is a coin flip on test. The target asks for
the best model's quality *within 25% of its cost*, so from this commit on it is judged on the
configuration chosen for exactly that, ``budget@0.25``, with the same grids and the same
variant choice by inner cross-validation. This rule was written down and committed before any
run with it. Because it was adopted after seeing seeds 0-2, the verdict is read on seeds 3-5
(``FRESH_SEEDS``: splits never run before); seeds 0-2 are shown beside it as development.

Read on the test folds (the routers' convention: the curve over every threshold): the cost to
match the best single model (the test fold's best, and the training folds' best: the model a
user would deploy), the quality within 50% / 75% of the best model's cost, and the cost to reach
98% of its quality; mean and std over folds x seeds, and beside them the pooled out-of-fold
curve (each seed's test folds summed at shared operating points). Writes
``benchmarks/results/cascade.md``, ``cascade.json`` and ``cascade.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from _provenance import dirty_files, head_commit

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LANGROUTE_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"

#: (label suffix, objective, share) of each cascade run, and the metric it is chosen for.
TARGETS = (
    ("", "match", 1.0, "cost_to_match_best"),
    ("[budget@0.5]", "budget", 0.5, "quality_at_50pct_cost"),
    ("[budget@0.75]", "budget", 0.75, "quality_at_75pct_cost"),
    ("[match@0.98]", "match", 0.98, "cost_to_98pct_quality"),
    ("[budget@0.25]", "budget", 0.25, "quality_at_25pct_cost"),
)
METRIC_NAMES = {
    "cost_to_match_best": "cost to match best (test fold's best)",
    "cost_to_match_train_best": "cost to match best (training folds' best)",
    "quality_at_25pct_cost": "quality at 25% of best's cost",
    "quality_at_50pct_cost": "quality at 50% of best's cost",
    "quality_at_75pct_cost": "quality at 75% of best's cost",
    "cost_to_98pct_quality": "cost to 98% of best's quality",
}
#: The issue's target on zeroeval-gsm8k: the best single model's quality at <= 25% of its cost.
GSM8K_TARGET = 0.25
#: The selection the gsm8k target is judged on (see the module docstring), and the former one.
GSM8K_JUDGED = "[budget@0.25]"
GSM8K_SELECTIONS = ((GSM8K_JUDGED, "best quality within 25% on the training folds (judged)"),
                    ("", "cheapest to match on the training folds (judged until 707891c)"))
#: Seeds from this one on were never run before the gsm8k selection changed: its verdict.
FRESH_SEEDS = 3
#: Column order: routing alone, then the cascade rows; the last is the one targets are judged on.
COLUMNS = (("sw", "routing alone (sw)"), ("cascade", "cascade alone"),
           ("sw+cascade", "routing + cascade (ladder)"),
           ("sw+pair-cascade", "cascade routing (pair)"),
           ("sw+chosen-cascade", "variant chosen by inner CV"))


def _machine() -> dict:
    import numpy

    return {
        "commit": head_commit(),
        "dirty": bool(dirty_files()),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def _one(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if metric.startswith("quality") else f"{100 * value:.0f}%"


def _fmt(values: list, metric: str) -> str:
    """Mean ± std over folds x seeds of the defined values, and how many are undefined."""
    defined = [v for v in values if v is not None]
    if not defined:
        return "never"
    mean, std = statistics.fmean(defined), statistics.pstdev(defined)
    text = (f"{mean:.3f} ± {std:.3f}" if metric.startswith("quality")
            else f"{100 * mean:.0f}% ± {100 * std:.0f}")
    never = len(values) - len(defined)
    if never:
        text += f" (n/a in {never}/{len(values)})"
    return text


def _row_label(column: str, scorer: str, suffix: str) -> str:
    return column if column == "sw" else f"{column}:{scorer}{suffix}"


def _values(report: dict, label: str, metric: str) -> list:
    return [f["routers"][label].get(metric) for f in report["folds"]]


def _pooled(report: dict, label: str, key: str = "pool") -> list[dict | None]:
    """One pooled out-of-fold result per seed (None where the folds share no grid)."""
    from langroute.evaluation._cascade import pooled_metrics

    seeds = sorted({f["seed"] for f in report["folds"]})
    return [pooled_metrics([f["routers"][label].get(key) for f in report["folds"]
                            if f["seed"] == seed]) for seed in seeds]


def _pooled_fmt(pooled: list[dict | None], metric: str) -> str:
    if any(p is None for p in pooled):
        return "mixed variants"
    values = [p[metric] for p in pooled]
    return " / ".join(_one(v, metric) for v in values)


def _deployed(report: dict, column: str, scorer: str, suffix: str) -> list[dict]:
    """Per test fold, the single operating point chosen on the training folds, read on the
    test fold (routing alone's is carried by the ladder row)."""
    if column == "sw":
        return [f["routers"][f"sw+cascade:{scorer}{suffix}"]["deployed_routing"]
                for f in report["folds"]]
    return [f["routers"][_row_label(column, scorer, suffix)]["deployed"]
            for f in report["folds"]]


def _deployed_fmt(points: list[dict]) -> str:
    cost = [p["cost_share"] for p in points]
    gap = [p["quality_gap"] for p in points]
    return (f"{100 * statistics.fmean(cost):.0f}% ± {100 * statistics.pstdev(cost):.0f} / "
            f"{100 * statistics.fmean(gap):+.1f} ± {100 * statistics.pstdev(gap):.1f}")


def _routing_pool_label(scorer: str, suffix: str) -> str:
    return f"sw+cascade:{scorer}{suffix}"


def _plot(reports: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in reports if n.startswith("zeroeval-")]
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        report = reports[name]
        best = report["baselines"]["best_single"]
        best_cost = best["cost"]["mean"]
        for label, style, text in (
                ("sw", "-", "routing alone (sw)"),
                ("cascade:agreement", "--", "cascade alone (agreement)"),
                ("sw+cascade:agreement", "-", "routing + cascade (ladder, deployable)"),
                ("sw+pair-cascade:agreement", ":", "cascade routing (pair)"),
                ("sw+chosen-cascade:agreement", "-.", "variant chosen by inner CV")):
            curve = report["routers"][label]["curve"]
            xs = [c / best_cost for c, q in zip(curve["cost"], curve["quality_mean"],
                                                strict=True) if q is not None]
            ys = [q for q in curve["quality_mean"] if q is not None]
            ax.plot(xs, ys, style, label=text)
        singles = report["baselines"]["single_models"]
        ax.scatter([s["cost"]["mean"] / best_cost for s in singles.values()],
                   [s["quality"]["mean"] for s in singles.values()], s=10, c="grey",
                   label="single models")
        ax.axhline(best["quality"]["mean"], color="grey", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_xlim(0.01, 1.5)
        ax.set_ylim(max(0.0, best["quality"]["mean"] - 0.35), 1.0)
        ax.set_xlabel("cost per call (share of the best single model's, log)")
        ax.set_ylabel("quality (test folds, mean over folds x seeds)")
        ax.set_title(f"{name} (configurations chosen to match the best model)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _seed_groups(report: dict) -> list[tuple[str, dict]]:
    """The report split into the seeds run before the gsm8k selection changed and the fresh
    ones (``FRESH_SEEDS``); the fresh group, where there is one, carries the verdict."""
    seeds = sorted({f["seed"] for f in report["folds"]})
    groups = []
    for name, keep in ((f"seeds {seeds[0]}-{FRESH_SEEDS - 1} (development)",
                        lambda s: s < FRESH_SEEDS),
                       (f"seeds {FRESH_SEEDS}-{seeds[-1]} (fresh: the verdict)",
                        lambda s: s >= FRESH_SEEDS)):
        folds = [f for f in report["folds"] if keep(f["seed"])]
        if folds:
            groups.append((name, {**report, "folds": folds}))
    if len(groups) == 1:
        groups = [(f"seeds {seeds[0]}-{seeds[-1]}", report)]
    return groups


def _gsm8k_table(report: dict, suffix: str) -> tuple[list[str], dict]:
    """Rows of the target table for one selection (``suffix``) over ``report``'s folds."""
    metric = "cost_to_match_train_best"
    lines: list[str] = []
    verdict: dict[str, tuple] = {}
    for column, name in COLUMNS:
        label = _row_label(column, "agreement", suffix)
        values = _values(report, label, metric)
        filled = [1e9 if v is None else v for v in values]
        ok = sum(v <= GSM8K_TARGET + 1e-12 for v in filled)
        pooled = (_pooled(report, _routing_pool_label("agreement", suffix), "pool_routing")
                  if column == "sw" else _pooled(report, label))
        median = statistics.median(filled)
        if column == "cascade":
            deployed_cells = "- | -"
        else:
            points = _deployed(report, column, "agreement", suffix)
            both = sum(p["cost_share"] <= GSM8K_TARGET + 1e-12 and p["quality_gap"] >= -1e-12
                       for p in points)
            deployed_cells = f"{_deployed_fmt(points)} | {both}/{len(points)}"
        lines.append(f"| {name} | {_fmt(values, metric)} | "
                     f"{_one(median if median < 1e9 else None, metric)} | "
                     f"{ok}/{len(values)} | {_pooled_fmt(pooled, metric)} | {deployed_cells} |")
        verdict[column] = (values, ok, pooled)
        if column != "cascade":
            verdict[f"{column} deployed"] = _deployed(report, column, "agreement", suffix)
    return lines, verdict


def _gsm8k_section(report: dict) -> tuple[list[str], list[dict]]:
    """The target tables and the misses of zeroeval-gsm8k; and the verdicts (judged first)."""
    metric = "cost_to_match_train_best"
    lines = ["## The zeroeval-gsm8k target", "",
             f"Target: the best single model's quality at <= {100 * GSM8K_TARGET:.0f}% of its "
             "cost (the training folds' best model, the one a user would deploy; its quality "
             "and cost read on the test fold). It is judged on the fold mean over folds x seeds "
             "of the row whose variant inner cross-validation chose (the issue's protocol: "
             "5-fold, all choices on training folds; picking the better variant after seeing "
             "both would be a choice made on test data), with every configuration chosen for "
             "the target's own objective, the best training quality within 25% of the best "
             "model's training cost (`budget@0.25`), and read on the fresh seeds. Until commit "
             "707891c it was judged on the configuration cheapest to match on the training "
             "folds (`match`), which missed on seeds 0-2; the rule changed after that miss and "
             "before any run with it, so the seeds 0-2 rows are development, shown beside the "
             "verdict, not instead (the bench's docstring has the reasoning). The folds "
             "reaching it and the pooled out-of-fold curve (one value per seed) are shown "
             "beside the fold mean, not instead.", ""]
    verdicts = []
    groups = _seed_groups(report)
    for suffix, selection in GSM8K_SELECTIONS:
        for group, part in groups[::-1]:
            rows, verdict = _gsm8k_table(part, suffix)
            verdict["selection"], verdict["group"] = selection, group
            verdicts.append(verdict)
            lines += [f"**{selection}, {group}**", "",
                      "| row | fold mean ± std | median | folds <= 25% | pooled out-of-fold "
                      "(per seed) | at the training-chosen point: cost / quality gap (pts) "
                      "| there, both met |",
                      "|---|---|---|---|---|---|---|", *rows, ""]
    lines += ["Routing alone's pooled curve uses 202 fixed thresholds (its fold mean uses "
              "every distinct one), so the two can differ slightly.", ""]
    label = _row_label("sw+chosen-cascade", "agreement", GSM8K_JUDGED)
    misses = [f for f in report["folds"]
              if (f["routers"][label][metric] or 1e9) > GSM8K_TARGET]
    overall = dict(zip(report["dataset"]["models"], report["dataset"]["mean_qualities"],
                       strict=True))
    lines += ["### Where it misses", "",
              "Folds where the judged row (best quality within 25% on the training folds, "
              "variant chosen by inner CV; every seed) needs more than 25%: the target model's "
              "test quality in that fold (correct answers of the test prompts, and its quality "
              "over the whole dataset), the best the row reaches within 25% of its cost, the "
              "gap in prompts, and the configuration.", "",
              "| seed | fold | target model | its test quality | all prompts | best within 25% "
              "| prompts short | cost to match | variant and configuration |",
              "|---|---|---|---|---|---|---|---|---|"]
    facts = {"n": len(misses), "lucky": 0, "short": [], "other_strong": 0, "half": 0,
             "verifier_sets": set()}
    for f in misses:
        m = f["routers"][label]
        facts["lucky"] += m["train_best_quality"] > overall[m["train_best_model"]] + 1e-12
        if m["quality_at_25pct_train_best_cost"] is not None:
            facts["short"].append(round((m["train_best_quality"]
                                         - m["quality_at_25pct_train_best_cost"]) * f["n_test"]))
        facts["other_strong"] += (m["config"]["variant"] == "pair"
                                  and m["config"]["strong"] != m["train_best_model"])
        facts["half"] += m["config"]["accept"] < 1
        facts["verifier_sets"].add(tuple(sorted(m["config"]["verifiers"])))
        n = f["n_test"]
        target = m["train_best_quality"]
        within = m["quality_at_25pct_train_best_cost"]
        short = "-" if within is None else f"{round((target - within) * n)}"
        config = m["config"]
        desc = (f"{config['variant']}: " + (
            f"{config['cheap']} checked by {', '.join(config['verifiers'])} (accept "
            f"{config['accept']:g}) -> {config['strong']}" if config["variant"] == "pair"
            else f"checked by {', '.join(config['verifiers'])}, accept {config['accept']:g}, "
                 f"band {config['band']:g}"))
        lines.append(
            f"| {f['seed']} | {f['fold']} | {m['train_best_model']} | "
            f"{round(target * n)}/{n} = {target:.3f} | {overall[m['train_best_model']]:.3f} | "
            f"{_one(within, 'quality')} | {short} | {_one(m[metric], metric)} | {desc} |")
    verdicts[0]["misses"] = facts
    return lines, verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embedder", choices=("minilm", "hashing"), default="minilm")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--datasets", help="comma-separated subset of ../shared/data")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    from langroute import load_outcomes
    from langroute.embeddings import HashingEmbedder, SentenceTransformerEmbedder
    from langroute.evaluation import evaluate
    from langroute.evaluation._cascade import (
        BANDS,
        GRIDS_FIXED,
        INNER_FOLDS,
        MAX_VERIFIERS,
        STRONG_CANDIDATES,
        CascadeSpec,
    )

    started = time.perf_counter()
    cache_dir = (os.environ.get("LANGROUTE_EMBEDDING_CACHE")
                 or REPO / ".langroute-cache" / "embeddings")
    embedder = (SentenceTransformerEmbedder(cache_dir=cache_dir) if args.embedder == "minilm"
                else HashingEmbedder(cache_dir=False))
    names = (args.datasets.split(",") if args.datasets
             else sorted(p.name for p in DATA.iterdir() if (p / "scores.csv").exists()))
    reports: dict = {}
    timings: dict = {}
    for name in names:
        t0 = time.perf_counter()
        outcomes = load_outcomes(DATA / name)
        scorer = ("agreement", None) if outcomes.answers is not None else ("simulated", 0.1)
        specs = [CascadeSpec(scorer[0], scorer[1], objective, share)
                 for _, objective, share, _ in TARGETS]
        reports[name] = evaluate(outcomes, ["sw"], embedder=embedder, folds=args.folds,
                                 seeds=args.seeds, cascades=specs, progress=False).to_dict()
        timings[name] = time.perf_counter() - t0
        print(f"{name}: {timings[name]:.1f} s", file=sys.stderr)

    n_evals = args.folds * args.seeds
    lines = [
        "# Cascades vs routing alone",
        "",
        f"Command: `python benchmarks/bench_cascade.py --embedder {args.embedder} "
        f"--folds {args.folds} --seeds {args.seeds}`. {args.folds}-fold cross-validation "
        f"repeated over {args.seeds} seeds of the split ({n_evals} test folds), SWRouter with "
        f"`{args.embedder}` embeddings. Every choice is made on the training folds, separately "
        f"for each target, from candidate grids fixed on {GRIDS_FIXED} (escalation target: "
        f"each of the {STRONG_CANDIDATES} best training models; cheap model: any cheaper one; "
        f"verifiers: every subset of 1 to {MAX_VERIFIERS} cheaper models; every accept "
        f"setting; ladder bands {'/'.join(f'{b:g}' for b in BANDS)}; the variant, ladder or "
        f"pair, by {INNER_FOLDS}-fold cross-validation inside the training folds), with the "
        "router's prior on training prompts out of fold. The figures are read on the test "
        "folds from the curve over every router threshold, as for the routers. Every call is "
        "paid for (cheap answer, verifiers, escalation). zeroeval-*: agreement of the "
        "verifiers' final answers; other datasets: RouterBench's simulated scorer with 10% "
        "error rate (no call, checking free). Mean ± std over folds x seeds; 'n/a in k/n': "
        "test folds where the target is never reached (mean over the others).",
        "",
        "| dataset | scorer | target | " + " | ".join(n for _, n in COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    pooled_lines = ["", "## Pooled out-of-fold curves", "",
                    "Each seed's test folds summed at operating points shared by every fold "
                    "(router thresholds, the pair's two thresholds, accept shares), so each "
                    "prompt is answered by the configuration chosen without it, and read "
                    "against the training folds' best models pooled the same way; one value "
                    "per seed. Less noisy than the fold mean (one curve over every prompt, not "
                    "a mean of per-fold crossings), but not the figure the targets are judged "
                    "on. 'mixed variants': inner CV chose the ladder in some folds and the "
                    "pair in others, so no operating point is shared.", "",
                    "| dataset | target | " + " | ".join(n for _, n in COLUMNS) + " |",
                    "|---|---|" + "---|" * len(COLUMNS)]
    deployed_lines = [
        "", "## At the operating point chosen on the training folds", "",
        "The curves above are read at every threshold, so the cheapest matching point of each "
        "test fold is picked on that fold (the routers' convention). Here the threshold(s) too "
        "are chosen on the training folds, by the target's objective on the training curve of "
        "the chosen configuration (routing alone: on the router's out-of-fold training "
        "curve), and that one operating point is read on the test fold: its cost as a share "
        "of the training folds' best model's, and its quality minus that model's, in points "
        "(mean ± std over folds x seeds). This is what deploying the choice would give.", "",
        "| dataset | target | " + " | ".join(n for c, n in COLUMNS if c != "cascade") + " |",
        "|---|---|" + "---|" * (len(COLUMNS) - 1)]
    target_names = {"": "match best", "[budget@0.5]": "budget 50%",
                    "[budget@0.75]": "budget 75%", "[match@0.98]": "98% of best's quality",
                    "[budget@0.25]": "budget 25%"}
    details = ["", "## Per fold", "",
               f"Values in split order (seed 0 folds 0-{args.folds - 1}, then seed 1, ...).",
               "",
               "| dataset | target | " + " | ".join(n for c, n in COLUMNS if c != "cascade")
               + " | configurations (seed 0 fold 0: chosen variant) |",
               "|---|---|" + "---|" * len(COLUMNS)]
    gsm8k_lines: list[str] = []
    gsm8k_verdicts: list[dict] = []
    for name, report in reports.items():
        scorer = next(iter(report["settings"]["cascades"].values()))
        scorer_label = ("agreement" if scorer["scorer"] == "agreement"
                        else f"simulated:{scorer['error_rate']:g}")
        for suffix, _, _, metric in TARGETS:
            deployed_lines.append(
                f"| {name} | {target_names[suffix]} | " + " | ".join(
                    _deployed_fmt(_deployed(report, c, scorer_label, suffix))
                    for c, _ in COLUMNS if c != "cascade") + " |")
            for shown in ([metric, "cost_to_match_train_best"] if suffix in ("", GSM8K_JUDGED)
                          else [metric]):
                cells = [_fmt(_values(report, _row_label(c, scorer_label, suffix), shown),
                              shown) for c, _ in COLUMNS]
                lines.append(f"| {name} | {scorer_label} | {METRIC_NAMES[shown]} | "
                             + " | ".join(cells) + " |")
                per_fold = [" ".join(_one(v, shown) for v in
                                     _values(report, _row_label(c, scorer_label, suffix), shown))
                            for c, _ in COLUMNS if c != "cascade"]
                chosen = report["folds"][0]["routers"][
                    _row_label("sw+chosen-cascade", scorer_label, suffix)]["config"]
                verifiers = ", ".join(chosen["verifiers"]) or "simulated"
                desc = (f"pair: {chosen['cheap']} checked by {verifiers} (accept "
                        f"{chosen['accept']:g}) -> {chosen['strong']}"
                        if chosen["variant"] == "pair" else
                        f"ladder: checked by {verifiers}, accept {chosen['accept']:g}, band "
                        f"{chosen['band']:g}")
                details.append(f"| {name} | {METRIC_NAMES[shown]} | " + " | ".join(per_fold)
                               + f" | {desc} |")
                if shown == "cost_to_match_best":
                    continue  # pooled: against the training folds' best only
                pooled = []
                for c, _ in COLUMNS:
                    if c == "sw":
                        result = _pooled(report, _routing_pool_label(scorer_label, suffix),
                                         "pool_routing")
                    else:
                        result = _pooled(report, _row_label(c, scorer_label, suffix))
                    pooled.append(_pooled_fmt(result, shown))
                pooled_lines.append(f"| {name} | {METRIC_NAMES[shown]} | "
                                    + " | ".join(pooled) + " |")
        if name == "zeroeval-gsm8k":
            gsm8k_lines, gsm8k_verdicts = _gsm8k_section(report)
    total = time.perf_counter() - started
    machine = _machine()

    summary = _summary(reports, gsm8k_verdicts)
    lines += [
        "",
        "Rows: *routing alone* = SWRouter's escalation ladder over every threshold; *cascade "
        "alone* = one cheap model checked by its verifiers, escalating to a strong model, over "
        "every accept setting; *routing + cascade (ladder)* = what "
        "`RoutedChatModel(cascade=Cascade(AgreementScorer(verifiers), accept=a, band=b))` "
        "does: the router decides, an answer below the top rung is checked when the router's "
        "strong score lies within `b` of the threshold, and a doubtful one sends the call one "
        "rung up; *cascade routing (pair)* = Dekoninck et al.'s idea on one cheap/strong pair: "
        "the prompts the router finds hardest go straight to the strong model, the next ones "
        "are cascaded, the easiest are answered by the cheap model unchecked (two router "
        "thresholds); *variant chosen by inner CV* = per test fold, the ladder or the pair, "
        "whichever did better for the target in cross-validation inside the training folds "
        "(the row the targets are judged on).",
        "",
        "Against the targets. " + summary,
        "",
        "Caveats. (1) The test fold's best single model is a maximum over many noisy per-fold "
        "estimates, so matching it is harder than matching the model a user would deploy (the "
        "training folds' best); both are shown. (2) The candidate grids were fixed on "
        f"{GRIDS_FIXED} before the runs reported here and not changed after them (smoke runs "
        "of the code on zeroeval-gsm8k and routellm-mtbench, seed 0, and one full run preceded "
        "this file; after them only the reporting was extended, the pooled and deployed "
        "readings and this text, no grid or selection rule; one objective was added later, "
        "`budget@0.25`, after a run of seeds 0-2 at 707891c missed the zeroeval-gsm8k target, "
        "and that target is now judged on it, on seeds never run before: see 'The "
        "zeroeval-gsm8k target'), and every choice within them is "
        "made on training rows. They are not blind "
        "to these datasets, though: they widen settings (one verifier, the best training model "
        "as the only escalation target, the same band grid, the same four objectives and two "
        "variants) that had been settled after looking at earlier 5-fold runs on the zeroeval "
        "sets; the internal resolutions (48 thresholds or cuts per curve on training rows, 2 "
        "inner folds) were set for speed, not tuned. (3) The simulated scorer makes no call: "
        "its checking is free and its errors are independent of the answer's difficulty, so "
        "those rows are optimistic (RouterBench's protocol, labelled simulated).",
        *pooled_lines,
        *deployed_lines,
        "",
        *gsm8k_lines,
        *details,
        "",
        f"Wall time {total:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}).",
        f"Commit {machine['commit'][:12]}{' (uncommitted changes)' if machine['dirty'] else ''}; "
        f"Python {machine['python']}, numpy {machine['numpy']}, {machine['platform']}, "
        f"{machine['cpus']} CPUs ({machine['processor']}).",
        "",
    ]
    text = "\n".join(lines)
    pooled_json = {
        name: {label: _pooled(report, label) for label in report["routers"]
               if "cascade" in label}
        for name, report in reports.items()}
    for report in reports.values():  # the pooled payloads are summarised above
        for fold in report["folds"]:
            for metrics in fold["routers"].values():
                metrics.pop("pool", None)
                metrics.pop("pool_routing", None)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "cascade.md").write_text(text, encoding="utf-8")
    (args.results / "cascade.json").write_text(json.dumps(
        {"command": " ".join(sys.argv), "machine": machine, "seconds": total,
         "pooled": pooled_json, "reports": reports}, separators=(",", ":")) + "\n",
        encoding="utf-8")  # compact: the per-fold curves are most of it
    if any(n.startswith("zeroeval-") for n in reports):
        _plot(reports, args.results / "cascade.png")
    print(text)
    return 0


def _summary(reports: dict, verdicts: list[dict]) -> str:
    """The 'Against the targets' paragraph, from the figures (no hand-typed numbers)."""
    parts = []
    if verdicts:
        gsm8k = verdicts[0]  # the judged selection on the fresh seeds
        values, ok, pooled = gsm8k["sw+chosen-cascade"]
        defined = [v for v in values if v is not None]
        n, never = len(values), len(values) - len(defined)
        mean = statistics.fmean(defined) if defined else None
        filled = [1e9 if v is None else v for v in values]
        median = statistics.median(filled)
        if never == 0 and mean is not None and mean <= GSM8K_TARGET + 1e-12:
            verdict = ("met in every test fold" if ok == n else
                       f"met on the fold mean, but not robustly: {n - ok}/{n} test folds "
                       "need more")
        elif never:
            verdict = (f"not met robustly: {never}/{n} test folds never reach the target "
                       f"model's quality and {n - ok}/{n} need more than 25% (the fold mean "
                       "is over the folds that reach it)")
        else:
            verdict = "not met on the fold mean"
        ladder_values, ladder_ok, ladder_pooled = gsm8k["sw+cascade"]
        routing_values, routing_ok, routing_pooled = gsm8k["sw"]
        metric = "cost_to_match_train_best"
        parts.append(
            f"zeroeval-gsm8k (the best model's quality at <= 25% of its cost, the training "
            f"folds' best model): the row judged (variant chosen by inner CV, configurations "
            f"chosen for the best quality within 25% of the best model's cost; "
            f"{gsm8k['group']}) needs "
            f"{_fmt(values, metric)} of its cost over {n} test folds (median "
            f"{_one(median if median < 1e9 else None, metric)}), at most 25% in {ok}/{n}; "
            f"the target is {verdict}. "
            + " ".join(
                f"{other['selection'].capitalize()}, {other['group']}: the chosen row needs "
                f"{_fmt(other['sw+chosen-cascade'][0], metric)}, at most 25% in "
                f"{other['sw+chosen-cascade'][1]}/{len(other['sw+chosen-cascade'][0])}."
                for other in verdicts[1:])
            + " With the judged selection, the ladder variant alone (deployable as is) needs "
            f"{_fmt(ladder_values, metric)}, at most 25% in {ladder_ok}/{len(ladder_values)}; "
            f"routing alone {_fmt(routing_values, metric)}, {routing_ok}/{len(routing_values)}. "
            "The fold mean reads each test fold's curve at its own cheapest matching "
            "threshold (the routers' convention), so the operating point is picked on the "
            "test fold; the pooled out-of-fold curve fixes one operating point for every "
            f"prompt of a seed and is the stricter reading: per seed, the ladder needs "
            f"{_pooled_fmt(ladder_pooled, metric)}, routing alone "
            f"{_pooled_fmt(routing_pooled, metric)}, the chosen row "
            f"{_pooled_fmt(pooled, metric)}. Read at the one operating point chosen on the "
            "training folds (what deploying the choice gives), as cost share / quality gap to "
            "the target model in points: the chosen row "
            f"{_deployed_fmt(gsm8k['sw+chosen-cascade deployed'])}, the ladder "
            f"{_deployed_fmt(gsm8k['sw+cascade deployed'])}, routing alone "
            f"{_deployed_fmt(gsm8k['sw deployed'])}; the gap's spread over folds is about a "
            "point (2-3 prompts), so whether one fold 'matches' the target is close to a "
            "coin flip.")
        facts = gsm8k["misses"]
        if facts["n"]:
            short = facts["short"]
            parts.append(
                f"Why folds miss ('Where it misses'): in {facts['lucky']}/{facts['n']} of them "
                "the target model scored above its all-prompt quality on that test fold, and "
                "within 25% of its cost the row is "
                + (f"{min(short)}-{max(short)} test prompts short" if short else "never close")
                + f"; in {facts['other_strong']}/{facts['n']} the pair variant escalates to a "
                "cheaper second-best training model that cannot reach the target's quality at "
                "all (the escalation-target grid now allows it, and the training folds chose "
                f"it). The missing folds use {len(facts['verifier_sets'])} different verifier "
                f"sets (no single verifier fails throughout); {facts['half']}/{facts['n']} "
                "accept when one of two verifiers agrees, which lets an error through whenever "
                "one verifier shares it.")
    for name in ("zeroeval-crux", "zeroeval-math-l5"):
        if name not in reports:
            continue
        report = reports[name]
        cells = []
        for suffix, metric in (("[budget@0.5]", "quality_at_50pct_cost"),
                               ("[budget@0.75]", "quality_at_75pct_cost"),
                               ("[match@0.98]", "cost_to_98pct_quality")):
            chosen = _values(report, _row_label("sw+chosen-cascade", "agreement", suffix),
                             metric)
            alone = _values(report, "sw", metric)
            cells.append(f"{METRIC_NAMES[metric]} {_fmt(chosen, metric)} against routing "
                         f"alone's {_fmt(alone, metric)}")
        parts.append(f"{name} (cascade routing against routing alone, variant chosen by "
                     f"inner CV): " + "; ".join(cells) + ".")
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
