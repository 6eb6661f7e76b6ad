"""Experiment: does contrastive fine-tuning of MiniLM on outcomes (OrchestraLLM) help SW routing?

    nice -n 15 python benchmarks/bench_contrastive.py [--dataset routellm-gsm8k] [--folds 5]
        [--pairs 2000] [--epochs 1]

For each outer fold, MiniLM is fine-tuned on the fold's *training* prompts only: pairs of prompts
whose model-outcome vectors are equal are positives, others negatives (OrchestraLLM's
expert-aware positives), with sentence-transformers' ``OnlineContrastiveLoss`` in a plain torch
loop (the ``SentenceTransformerTrainer`` needs the ``datasets`` and ``accelerate`` packages,
which langroute does not install). Every prompt is then re-embedded with the fine-tuned encoder,
``SWRouter(gamma=100)`` is fitted on the training prompts and scored on the test fold, beside the
same router on the original MiniLM embeddings. Writes ``benchmarks/results/contrastive.json``
with the commit, command and machine facts.

This is the first, larger-budget (2000 pairs) experiment. The same method is now a router,
``langroute.routers.ContrastiveRouter`` (``--router contrastive``; the encoder is saved beside
the router file), evaluated by ``bench_eval_sweep.py`` with a smaller budget fixed a priori.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LANGROUTE_SHARED_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO / "benchmarks"))


def render_summary(summary: dict) -> str:
    """The README's sentence on this experiment, from ``contrastive.json``."""
    folds = summary["folds"]
    base = ", ".join(f"{r['minilm']:.3f}" for r in folds)
    tuned = ", ".join(f"{r['fine-tuned']:.3f}" for r in folds)
    better = sum(r["fine-tuned"] > r["minilm"] for r in folds)
    return (
        f"On {summary['dataset']} ({len(folds)} outer folds, {summary['pairs']} pairs, "
        f"{summary['epochs']} epoch), {summary['scoring'].upper()} of `SWRouter(gamma=100)` "
        f"was {summary['mean']['minilm']:.3f} with MiniLM ({base}) and "
        f"{summary['mean']['fine-tuned']:.3f} with the fine-tuned encoder ({tuned}); "
        f"fine-tuning helped on {better} of {len(folds)} folds."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="routellm-gsm8k")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch
    from bench_eval_sweep import provenance
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import OnlineContrastiveLoss

    from langroute import SWRouter, load_outcomes
    from langroute.embeddings import SentenceTransformerEmbedder, default_model_path
    from langroute.evaluation import make_splits, validation_score
    from langroute.routers import calibration_scores_disabled

    torch.set_num_threads(1)
    facts = provenance(sys.argv)
    data = load_outcomes(DATA / args.dataset)
    cache = REPO / ".langroute-cache" / "embeddings"
    base_vectors = SentenceTransformerEmbedder(cache_dir=cache).embed(list(data.prompts))
    patterns = np.unique(np.nan_to_num(data.scores, nan=-1.0), axis=0, return_inverse=True)[1]
    scoring = "apgr" if len(data.models) == 2 else "aiq"
    rows = []
    for sp in make_splits(data.prompts, folds=args.folds):
        t0 = time.perf_counter()
        rng = np.random.default_rng(sp.fold)
        model = SentenceTransformer(default_model_path(), device="cpu")
        loss_fn = OnlineContrastiveLoss(model)
        optimiser = torch.optim.AdamW(model.parameters(), lr=2e-5)
        a = rng.choice(sp.train, args.pairs)
        b = rng.choice(sp.train, args.pairs)
        labels = (patterns[a] == patterns[b]).astype(np.float32)
        model.train()
        for _ in range(args.epochs):
            for start in range(0, args.pairs, args.batch_size):
                ia, ib = a[start:start + args.batch_size], b[start:start + args.batch_size]
                features = [model.tokenize([data.prompts[i] for i in ids]) for ids in (ia, ib)]
                loss = loss_fn(features, torch.from_numpy(labels[start:start + args.batch_size]))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        model.eval()
        tuned = model.encode(list(data.prompts), batch_size=64, normalize_embeddings=True,
                             convert_to_numpy=True).astype(np.float32)
        train, test = data.subset(sp.train), data.subset(sp.test)
        result = {"fold": sp.fold, "positive_share": float(labels.mean())}
        for name, vectors in (("minilm", base_vectors), ("fine-tuned", tuned)):
            router = SWRouter(gamma=100.0)
            router._calibration_embeddings = vectors[sp.train]  # fit on these vectors
            with calibration_scores_disabled():
                router.fit(train)
            result[name] = validation_score(router, test, vectors[sp.test], scoring)
        result["seconds"] = time.perf_counter() - t0
        rows.append(result)
        print(json.dumps(result), flush=True)
    summary = {**facts, "dataset": args.dataset, "scoring": scoring, "pairs": args.pairs,
               "epochs": args.epochs, "folds": rows,
               "mean": {k: float(np.mean([r[k] for r in rows])) for k in ("minilm", "fine-tuned")}}
    out = REPO / "benchmarks" / "results" / "contrastive.json"
    out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(summary["mean"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
