"""A router on a prompt encoder fine-tuned contrastively from outcomes (OrchestraLLM).

OrchestraLLM fine-tunes its retriever so that prompts the same experts handle well sit close
together. ``ContrastiveRouter`` does this inside ``fit``, from the training outcomes only:

1. every training prompt gets an *outcome pattern*: for each pair of models, which of the two
   scored higher (or a tie). Two prompts with the same pattern are a positive pair (the same
   models win on them: expert-aware), two with different patterns a negative pair;
2. a copy of MiniLM (or another local sentence-transformers folder) is fine-tuned on a fixed
   number of such pairs with sentence-transformers' ``OnlineContrastiveLoss`` on the CPU
   (``langroute.embeddings.fine_tune_contrastive``);
3. the inner router (SW by default) is fitted on the training outcomes with an embedder on the
   fine-tuned encoder, and scores every prompt: the win matrices are the inner router's, so
   policies, calibration and ``evaluate`` work unchanged.

``save(path)`` writes the router file and the encoder folder ``<path>.encoder`` beside it; the
file records the SHA-256 of that folder's files and the encoder's probe-vector fingerprint,
and ``load(path)`` rebuilds the embedder offline from that folder only (a missing or changed
folder is a RouterFileError).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np

from .._exceptions import OutcomesError, RouterConfigError
from .._outcomes import Battles, Outcomes
from ..embeddings import (
    Embedder,
    FineTunedEmbedder,
    encoder_folder,
    fine_tune_contrastive,
)
from ..embeddings._finetune import FINE_TUNE_LOSSES
from ..embeddings._sentence_transformers import DEFAULT_MODEL
from ._base import _REGISTRY, BaseRouter
from ._validation import check_fit_data, check_int, check_number, check_random_state

__all__ = ["ContrastiveRouter", "outcome_pairs", "outcome_patterns"]


def outcome_patterns(scores: np.ndarray) -> np.ndarray:
    """Group id of every prompt's outcome pattern (who beats whom, per model pair).

    Parameters
    ----------
    scores : ndarray of shape (n_prompts, n_models)
        NaN (not measured) is its own outcome.

    Returns
    -------
    ndarray of shape (n_prompts,), int
        Equal ids for prompts on which every pair of models compares the same way.
    """
    scores = np.asarray(scores, dtype=np.float64)
    i, j = np.triu_indices(scores.shape[1], k=1)
    diff = scores[:, i] - scores[:, j]
    signs = np.where(np.isnan(diff), 2, np.sign(np.nan_to_num(diff))).astype(np.int8)
    return np.unique(signs, axis=0, return_inverse=True)[1].ravel()


def outcome_pairs(
    patterns: np.ndarray, n_pairs: int, positive_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_pairs`` random pairs of prompt rows and their labels (1 = same outcome pattern).

    About ``positive_fraction`` of the pairs are positives: a random prompt from a pattern
    shared by at least two prompts and another prompt of that pattern. The rest are negatives:
    two random prompts of different patterns. Raises RouterConfigError if either kind cannot
    be formed.
    """
    patterns = np.asarray(patterns)
    n = len(patterns)
    n_pos = int(round(n_pairs * positive_fraction))
    n_neg = n_pairs - n_pos
    order = np.argsort(patterns, kind="stable")
    groups, starts, sizes = np.unique(patterns[order], return_index=True, return_counts=True)
    if n_pos and not np.any(sizes >= 2):
        raise RouterConfigError(
            "no two training prompts share an outcome pattern, so there are no positive pairs; "
            "use positive_fraction=0 or more training data"
        )
    if n_neg and len(groups) < 2:
        raise RouterConfigError(
            "every training prompt has the same outcome pattern: nothing to contrast"
        )
    # Positives: anchors among prompts of shared patterns, partner another member of the group.
    group_of = np.searchsorted(groups, patterns[order])
    eligible = np.flatnonzero(sizes[group_of] >= 2)  # positions in ``order``
    anchor_pos = rng.choice(eligible, n_pos) if n_pos else np.empty(0, dtype=np.int64)
    g = group_of[anchor_pos]
    offset = anchor_pos - starts[g]
    partner_pos = starts[g] + (offset + 1 + rng.integers(0, sizes[g] - 1)) % sizes[g]
    pos_a, pos_b = order[anchor_pos], order[partner_pos]
    # Negatives: random pairs, redrawn where the two patterns are equal.
    neg_a = rng.integers(0, n, n_neg)
    neg_b = rng.integers(0, n, n_neg)
    same = patterns[neg_a] == patterns[neg_b]
    while same.any():
        neg_b[same] = rng.integers(0, n, int(same.sum()))
        same = patterns[neg_a] == patterns[neg_b]
    a = np.concatenate([pos_a, neg_a])
    b = np.concatenate([pos_b, neg_b])
    labels = np.concatenate([np.ones(n_pos, np.float32), np.zeros(n_neg, np.float32)])
    shuffle = rng.permutation(n_pairs)
    return a[shuffle], b[shuffle], labels[shuffle]


class ContrastiveRouter(BaseRouter):
    """A router on MiniLM fine-tuned contrastively on the training outcomes (OrchestraLLM).

    Parameters
    ----------
    router : str or BaseRouter, default="sw"
        The inner router: a name from ``langroute.evaluation.router_names()`` or an unfitted
        router taking an ``embedder`` (it is cloned; its embedder is replaced by the
        fine-tuned one). A ``TunedRouter`` tunes the inner router on the fine-tuned
        embeddings.
    base : str, default="all-MiniLM-L6-v2"
        The encoder to fine-tune: the packaged MiniLM or a local sentence-transformers folder.
    pairs : int, default=1000
        Training pairs drawn from the training prompts (the budget; one forward and backward
        pass of both prompts per pair and epoch).
    positive_fraction : float, default=0.5
        Share of positive pairs (same outcome pattern).
    epochs : int, default=1
    batch_size : int, default=16
        Pairs per optimiser step.
    max_seq_length : int, default=128
        Tokens per prompt, in training and when embedding.
    learning_rate : float, default=5e-5
        AdamW's (constant) learning rate; the default is the one of Hugging Face's trainer.
    loss : {"online_contrastive", "contrastive"}, default="online_contrastive"
        sentence-transformers' ``OnlineContrastiveLoss`` or ``ContrastiveLoss``.
    random_state : int, default=0
        Seeds the pairs, their order and dropout.

    The defaults are fixed a priori (no shared dataset chose them). Fitting costs about
    0.1-0.2 CPU-seconds per pair (MiniLM, 128 tokens) plus embedding the training prompts.

    Attributes
    ----------
    models_, costs_, quality_ : see ``BaseRouter``.
    router_ : BaseRouter
        The inner router, fitted on the fine-tuned embeddings; it scores every prompt.
    embedder_ : FineTunedEmbedder
        The fine-tuned encoder.
    n_positive_pairs_ : int
        Positive pairs trained on.
    best_params_ : dict
        Only when the inner router is a ``TunedRouter``: the setting it chose.
    calibration_win_matrices_ : ndarray or None
        The inner router's out-of-fold scores (the encoder itself was fine-tuned on all
        training prompts, which makes them slightly optimistic).
    """

    kind = "contrastive"
    learns_embedder = True

    def __init__(
        self,
        router: str | BaseRouter = "sw",
        *,
        base: str = DEFAULT_MODEL,
        pairs: int = 1000,
        positive_fraction: float = 0.5,
        epochs: int = 1,
        batch_size: int = 16,
        max_seq_length: int = 128,
        learning_rate: float = 5e-5,
        loss: str = "online_contrastive",
        random_state: int = 0,
    ) -> None:
        self.router = router
        self.base = base
        self.pairs = pairs
        self.positive_fraction = positive_fraction
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.learning_rate = learning_rate
        self.loss = loss
        self.random_state = random_state

    # -- parameters -------------------------------------------------------------------------------
    def _validate_params(self) -> None:
        self._inner_template()
        if not isinstance(self.base, str) or not self.base:
            raise RouterConfigError(f"base must be a model name or folder, got {self.base!r}")
        check_int("pairs", self.pairs, minimum=2)
        check_number("positive_fraction", self.positive_fraction)
        if self.positive_fraction > 1:
            raise RouterConfigError(
                f"positive_fraction must be in [0, 1], got {self.positive_fraction!r}"
            )
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=2)
        check_int("max_seq_length", self.max_seq_length, minimum=8)
        check_number("learning_rate", self.learning_rate, strict=True)
        if self.loss not in FINE_TUNE_LOSSES:
            raise RouterConfigError(f"unknown loss {self.loss!r}; choose one of "
                                    f"{list(FINE_TUNE_LOSSES)}")
        check_random_state(self.random_state)
        if self.random_state is None:
            raise RouterConfigError("random_state must be an int >= 0 (fine-tuning is seeded)")

    def _inner_template(self) -> BaseRouter:
        """An unfitted inner router (built from its name, or a clone of the one given)."""
        if isinstance(self.router, str):
            from ..evaluation._registry import make_router

            inner = make_router(self.router)
        elif isinstance(self.router, BaseRouter):
            inner = self.router.clone()
        else:
            raise RouterConfigError(
                f"router must be a router name or an unfitted BaseRouter, got {self.router!r}"
            )
        if "embedder" not in inner._param_names() or inner.learns_embedder:
            raise RouterConfigError(
                f"the inner router must take an embedder, got {type(inner).__name__}"
            )
        return inner

    def _params_for_file(self) -> dict[str, Any]:
        params = self.get_params()
        if isinstance(self.router, BaseRouter):
            params["router"] = {"kind": self.router.kind, "params": {
                k: v for k, v in self.router.get_params().items() if k != "embedder"}}
        return params

    @classmethod
    def _params_from_file(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = dict(params)
        inner = params.get("router")
        if isinstance(inner, dict):
            target = _REGISTRY.get(str(inner.get("kind")))
            if target is None or not isinstance(inner.get("params"), dict):
                raise ValueError(f"unknown inner router {inner!r}")
            params["router"] = target(**inner["params"])
        return params

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, outcomes: Outcomes | Battles) -> Self:
        """Fine-tune the encoder on pairs of training prompts, then fit the inner router."""
        self._validate_params()
        if isinstance(outcomes, Battles):
            raise RouterConfigError(
                "ContrastiveRouter needs each prompt's outcome for every model (Outcomes); "
                "pairwise battles give no outcome patterns"
            )
        if not isinstance(outcomes, Outcomes):
            raise TypeError(f"fit() takes Outcomes, got {type(outcomes).__name__}")
        check_fit_data(outcomes)
        if len(outcomes) < 3:
            raise OutcomesError(f"contrastive fine-tuning needs at least 3 training prompts, "
                                f"got {len(outcomes)}")
        if not (self.base == DEFAULT_MODEL or Path(self.base).is_dir()):
            raise RouterConfigError(
                f"base must be {DEFAULT_MODEL!r} (the packaged model) or a local "
                f"sentence-transformers folder, got {self.base!r}"
            )
        inner = self._inner_template()
        rng = np.random.default_rng(self.random_state)
        patterns = outcome_patterns(outcomes.scores)
        a, b, labels = outcome_pairs(patterns, self.pairs, float(self.positive_fraction), rng)
        prompts = outcomes.prompts
        embedder = fine_tune_contrastive(
            [prompts[i] for i in a], [prompts[i] for i in b], labels, base=self.base,
            loss=self.loss, epochs=self.epochs, batch_size=self.batch_size,
            max_seq_length=self.max_seq_length, learning_rate=float(self.learning_rate),
            seed=self.random_state,
        )
        self.router_ = inner.set_params(embedder=embedder).fit(outcomes)
        self.embedder_ = embedder
        self.n_positive_pairs_ = int(labels.sum())
        self._keep_best_params()
        self._new_fit_version()
        self.models_ = list(self.router_.models_)
        self.costs_ = self.router_.costs_
        self.quality_ = self.router_.quality_
        self.calibration_win_matrices_ = getattr(self.router_, "calibration_win_matrices_", None)
        self._calibration_note = getattr(self.router_, "_calibration_note", "")
        return self

    def _keep_best_params(self) -> None:
        """``best_params_`` of the inner router when it is a ``TunedRouter`` (what it chose),
        else none: also after a refit with another inner router, and after ``load``."""
        self.__dict__.pop("best_params_", None)
        if hasattr(self.router_, "best_params_"):
            self.best_params_ = dict(self.router_.best_params_)

    def _resolve_embedder(self) -> Embedder:
        self._check_is_fitted()
        return self.embedder_

    def warm_up(self) -> float:
        """Load the fine-tuned encoder and run it once; returns the seconds it took."""
        return self._resolve_embedder().warm_up()

    def _win_matrices(self, embeddings: np.ndarray) -> np.ndarray:
        return self.router_.win_matrices_from_embeddings(embeddings)

    # -- persistence ------------------------------------------------------------------------------
    def _embedder_to_record(self) -> Embedder | None:
        return self.embedder_

    def _save_artifacts(self, path: str | Path) -> None:
        self.embedder_.copy_to(encoder_folder(path))

    def _use_learned_embedder(self, embedder: Embedder) -> None:
        if not isinstance(embedder, FineTunedEmbedder):
            raise RouterConfigError(
                f"a ContrastiveRouter embeds with its fine-tuned encoder folder "
                f"(FineTunedEmbedder), got {type(embedder).__name__}"
            )
        self.embedder_ = embedder

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        inner_state, inner_arrays = self.router_._get_state()
        state = {
            "router_kind": self.router_.kind,
            "router_params": {k: v for k, v in self.router_.get_params().items()
                              if k != "embedder"},
            "router_state": inner_state,
            "n_positive_pairs_": self.n_positive_pairs_,
        }
        return state, {f"router/{k}": v for k, v in inner_arrays.items()}

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        cls = _REGISTRY.get(state["router_kind"])
        if cls is None or cls.learns_embedder or "embedder" not in cls._param_names():
            raise ValueError(f"unknown inner router kind {state['router_kind']!r}")
        inner = cls(**{**state["router_params"], "embedder": self.embedder_})
        inner._validate_params()
        inner.models_, inner.costs_, inner.quality_ = self.models_, self.costs_, self.quality_
        inner._set_state(dict(state["router_state"]),
                         {k[7:]: v for k, v in arrays.items() if k.startswith("router/")})
        inner._new_fit_version()
        self.router_ = inner
        self.n_positive_pairs_ = int(state["n_positive_pairs_"])
        self._keep_best_params()
