"""RouteLLM's matrix-factorisation router, trained in numpy on aggregated pairwise outcomes.

RouteLLM scores model ``m`` on prompt ``q`` as ``s(m, q) = w2 . (v_m * (W1 q))``: a learned
model embedding ``v_m`` (L2-normalised), the prompt embedding projected to the same size, their
elementwise product and a linear head without bias; ``P(i beats j) = sigmoid(s_i - s_j)``. It
is a low-rank bilinear model, so training needs only a few matrix products per minibatch, and
the win matrix is consistent by construction (``P + P^T = 1``).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from .._exceptions import OutcomesError
from .._outcomes import Battles, Outcomes
from ..embeddings import Embedder
from ._base import BaseRouter
from ._bradley_terry import win_probabilities
from ._validation import check_int, check_number, check_random_state

__all__ = ["MFRouter"]

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_NEGLIGIBLE_WEIGHT = 1e-12


class MFRouter(BaseRouter):
    """Matrix-factorisation router (RouteLLM's MF) for any number of models.

    Training follows RouteLLM's ``train_matrix_factorization.py``: Adam with L2 weight decay
    on the logistic (Bradley-Terry) loss of every recorded comparison, Gaussian noise of scale
    ``noise`` added to the prompt embeddings during training only, model embeddings
    ``N(0, 1)``-initialised and L2-normalised in the forward pass, no biases. Minibatches are
    groups of prompts: all comparisons recorded on a prompt share one projection ``W1 q``, so a
    3k-prompt, 11-model dataset (55 pairs per prompt) costs no more than a 3k-pair one.

    Deviations from RouteLLM: ties count as half a win for each side (RouteLLM drops them),
    each prompt's comparisons are weighted by how many were recorded, and the defaults differ
    (RouteLLM: dim 128, 100 epochs of batch 64, lr 3e-4, for 1536-d OpenAI embeddings and ~100k
    Arena battles; see Parameters for the values chosen here).

    Parameters
    ----------
    embedder : Embedder, default=None
        Turns prompts into vectors; None means the default embedder (all-MiniLM-L6-v2 on
        ONNX Runtime, int8, offline).
    dim : int, default=128
        Size of the model embeddings and of the projected prompt (RouteLLM's ``dim``).
    epochs : int, default=40
        Passes over the training prompts.
    lr : float, default=3e-3
        Adam learning rate.
    weight_decay : float, default=1e-4
        L2 penalty added to the gradient (``torch.optim.Adam``'s ``weight_decay``).
    noise : float, default=0.1
        Standard deviation of the Gaussian noise added to each embedding coordinate while
        training (RouteLLM's ``alpha``, same value); regularises towards smooth decisions.
    batch_size : int, default=256
        Prompts per Adam step.
    random_state : int or None, default=None
        Seeds initialisation, shuffling and noise; an int makes ``fit`` reproducible.

    The defaults were chosen by 5-fold cross-validation of held-out pairwise log-loss on four
    shared datasets (routellm-gsm8k, routellm-mmlu's first 4000 prompts, routerbench-slice,
    zeroeval-math-l5; MiniLM embeddings) over epochs 10-50, lr 1e-3-1e-2, weight decay
    1e-4-1e-2 and noise 0.02-0.1. Small datasets want more epochs, MMLU-like ones overfit
    with more; 40 epochs with noise 0.1 had the lowest total, weight decay >= 1e-2 learnt
    nothing. Chosen on shared data, so no reported figure rests on them: the README's sweep
    re-chooses the epochs inside each outer fold (nested CV, ``langroute eval --tune``).

    Attributes
    ----------
    models_, costs_, quality_ : see ``BaseRouter``.
    model_embeddings_ : ndarray of shape (n_models, dim)
        Unit-length model embeddings ``v_m``.
    projection_ : ndarray of shape (dim, embedding_dim)
        ``W1``, maps a prompt embedding to ``dim``.
    head_ : ndarray of shape (dim,)
        ``w2``, the linear classifier.
    loss_curve_ : ndarray of shape (epochs,)
        Mean training loss (per comparison, with noise) of each epoch.

    See Also
    --------
    SWRouter, KNNRouter : non-parametric routers on the same data.

    Examples
    --------
    >>> outcomes = load_outcomes("../shared/data/routellm-mmlu")  # doctest: +SKIP
    >>> router = MFRouter(random_state=0).fit(outcomes)  # doctest: +SKIP
    >>> router.win_matrix("Which gas do plants absorb?")  # doctest: +SKIP
    """

    kind = "mf"

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        dim: int = 128,
        epochs: int = 40,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        noise: float = 0.1,
        batch_size: int = 256,
        random_state: int | None = None,
    ) -> None:
        self.embedder = embedder
        self.dim = dim
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.noise = noise
        self.batch_size = batch_size
        self.random_state = random_state

    def _validate_params(self) -> None:
        for name in ("dim", "epochs", "batch_size"):
            check_int(name, getattr(self, name))
        check_number("lr", self.lr, strict=True)
        check_number("weight_decay", self.weight_decay)
        check_number("noise", self.noise)
        check_random_state(self.random_state)

    def _check_training_data(self, prompts: list[str], counts: np.ndarray | None) -> None:
        if counts is not None and not (counts.sum(axis=(1, 2)) > 0).any():
            raise OutcomesError("no prompt has two measured models to compare; nothing to learn")

    def fit(self, outcomes: Outcomes | Battles) -> Self:
        """Embed the training prompts and train the factorisation with Adam; returns ``self``."""
        _, counts, embeddings = self._fit_inputs(outcomes)
        compared = counts.sum(axis=(1, 2)) > 0
        rng = np.random.default_rng(self.random_state)
        params, self.loss_curve_ = _train(
            embeddings[compared].astype(np.float32),
            counts[compared].astype(np.float32),
            dim=self.dim,
            epochs=self.epochs,
            lr=float(self.lr),
            weight_decay=float(self.weight_decay),
            noise=float(self.noise),
            batch_size=self.batch_size,
            rng=rng,
        )
        raw_models, self.projection_, self.head_ = (p.astype(np.float64) for p in params)
        self.model_embeddings_ = raw_models / np.linalg.norm(raw_models, axis=1, keepdims=True)
        self._set_common_fitted(outcomes)
        return self

    # -- scoring ---------------------------------------------------------------------------------
    def model_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """RouteLLM's logits ``s(m, q)`` for each query and model, shape (n_queries, n_models)."""
        self._check_is_fitted()
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        if queries.ndim != 2 or queries.shape[1] != self.projection_.shape[1]:
            raise ValueError(
                f"embeddings must have shape (n, {self.projection_.shape[1]}), "
                f"got {np.shape(embeddings)}"
            )
        projected = (queries @ self.projection_.T) * self.head_
        scores: np.ndarray = projected @ self.model_embeddings_.T
        return scores

    def _win_matrices(self, embeddings: np.ndarray) -> np.ndarray:
        return win_probabilities(self.model_scores(embeddings))

    # -- persistence -----------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {
            "model_embeddings": self.model_embeddings_,
            "projection": self.projection_,
            "head": self.head_,
            "loss_curve": self.loss_curve_,
        }
        return {}, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.model_embeddings_ = np.ascontiguousarray(arrays["model_embeddings"], dtype=np.float64)
        self.projection_ = np.ascontiguousarray(arrays["projection"], dtype=np.float64)
        self.head_ = np.ascontiguousarray(arrays["head"], dtype=np.float64)
        self.loss_curve_ = np.ascontiguousarray(arrays["loss_curve"], dtype=np.float64)
        dim = self.head_.shape[0] if self.head_.ndim == 1 else -1
        if (
            self.model_embeddings_.shape != (len(self.models_), dim)
            or self.projection_.ndim != 2
            or self.projection_.shape[0] != dim
        ):
            raise ValueError("array shapes do not match the model list and dim")


def _train(
    embeddings: np.ndarray,
    counts: np.ndarray,
    *,
    dim: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    noise: float,
    batch_size: int,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Minibatch Adam on sum_ij W_ij * -log sigmoid(s_i - s_j) / (games in the batch).

    Returns ``([raw model embeddings, W1, w2], loss per epoch)``: float32 weights, float64
    optimiser state.
    """
    n, d = embeddings.shape
    m = counts.shape[1]
    # torch defaults: Embedding ~ N(0, 1); Linear ~ U(+-1/sqrt(fan_in)).
    models = rng.standard_normal((m, dim), dtype=np.float32)
    bound_proj, bound_head = 1.0 / np.sqrt(d), 1.0 / np.sqrt(dim)
    proj = rng.uniform(-bound_proj, bound_proj, (dim, d)).astype(np.float32)
    head = rng.uniform(-bound_head, bound_head, dim).astype(np.float32)
    params = [models, proj, head]
    # Adam's moments in float64: squared gradients of barely-used weights would be subnormal
    # in float32 (see the flush below).
    first = [np.zeros(p.shape) for p in params]
    second = [np.zeros(p.shape) for p in params]
    beta1, beta2 = _ADAM_BETAS
    step = 0
    losses = np.empty(epochs)
    for epoch in range(epochs):
        order = rng.permutation(n)
        total_loss = 0.0
        total_games = 0.0
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            q = embeddings[rows]
            if noise > 0:
                q = q + noise * rng.standard_normal(q.shape, dtype=np.float32)
            wins = counts[rows]  # (B, M, M)
            games = float(wins.sum())
            norms = np.linalg.norm(models, axis=1, keepdims=True)
            unit = models / norms
            h = q @ proj.T  # (B, dim)
            hw = h * head
            s = hw @ unit.T  # (B, M)
            diff = s[:, :, None] - s[:, None, :]
            p = _sigmoid(diff)  # p[b, i, j] = P(i beats j)
            total_loss += float((wins * np.logaddexp(0.0, -diff)).sum())
            total_games += games
            grad_s = ((np.swapaxes(wins, 1, 2) * p).sum(axis=2)
                      - (wins * np.swapaxes(p, 1, 2)).sum(axis=2)) / games
            grad_hw = grad_s @ unit  # (B, dim)
            grad_unit = grad_s.T @ hw  # (M, dim)
            grad_models = (grad_unit - unit * (unit * grad_unit).sum(axis=1, keepdims=True)) / norms
            grad_h = grad_hw * head
            grad_head = (grad_hw * h).sum(axis=0)
            grad_proj = grad_h.T @ q
            step += 1
            for i, grad in enumerate((grad_models, grad_proj, grad_head)):
                if weight_decay:
                    grad = grad + weight_decay * params[i]
                first[i] = beta1 * first[i] + (1 - beta1) * grad
                second[i] = beta2 * second[i] + (1 - beta2) * grad * grad
                m_hat = first[i] / (1 - beta1**step)
                v_hat = second[i] / (1 - beta2**step)
                params[i] -= (lr * m_hat / (np.sqrt(v_hat) + _ADAM_EPS)).astype(np.float32)
                # Weight decay shrinks unused weights geometrically; products of such weights
                # become subnormal floats, which make every later step many times slower. A
                # weight below 1e-12 changes no score, so it is set to exactly 0.
                np.copyto(params[i], 0.0, where=np.abs(params[i]) < _NEGLIGIBLE_WEIGHT)
            models, proj, head = params
        losses[epoch] = total_loss / total_games
    return params, losses


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))
