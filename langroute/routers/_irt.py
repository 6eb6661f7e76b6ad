"""IRT router: per-model abilities, per-prompt discrimination and difficulty from the embedding.

Item response theory explains each outcome by what the model can do and what the prompt asks:
in its multidimensional form, P(model m answers q well) = sigmoid(a(q) . theta_m - b(q) + c_m).
IRT-Router (Song et al., 2025) predicts the prompt side -- the discrimination vector ``a(q)``
and the difficulty ``b(q)`` -- from the prompt's embedding, so it applies to prompts never seen;
the abilities ``theta_m`` and biases ``c_m`` belong to the models. Unlike the pairwise routers it
learns from absolute scores (both models right and both wrong are different evidence), trained
by torch on the binary cross-entropy of the measured quality.

The predicted qualities become a win matrix as for independent binary outcomes: P(i beats j) +
P(tie)/2 = 1/2 + (p_i - p_j)/2, so the escalation ladder climbs to a pricier model when its
predicted quality exceeds the current one's by a margin set by the threshold.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

import numpy as np

from .._exceptions import OutcomesError, RouterConfigError
from .._outcomes import Battles, Outcomes
from ..embeddings import Embedder
from ._base import BaseRouter
from ._validation import check_int, check_number, check_random_state

__all__ = ["IRTRouter", "quality_win_matrices", "torch_single_thread"]


@contextmanager
def torch_single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, restoring the previous count after.

    The models trained here are a few small matrices: more threads only add synchronisation,
    and on a busy machine they make each step many times slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def quality_win_matrices(quality: np.ndarray) -> np.ndarray:
    """Win matrices ``1/2 + (q_i - q_j)/2`` from qualities in [0, 1]: (n, M) -> (n, M, M)."""
    q = np.clip(np.asarray(quality, dtype=np.float64), 0.0, 1.0)
    win: np.ndarray = 0.5 + 0.5 * (q[:, :, None] - q[:, None, :])
    return win


class IRTRouter(BaseRouter):
    """Multidimensional IRT router (IRT-Router style) trained with torch.

    ``P(m good on q) = sigmoid(a(q) . theta_m - b(q) + c_m)`` with ``a(q) = A q + a0`` and
    ``b(q) = w . q``; trained full-batch with Adam (weight decay on every weight) on the binary
    cross-entropy of the measured scores (soft targets in [0, 1]; missing scores are skipped).

    Parameters
    ----------
    embedder : Embedder, default=None
        Turns prompts into vectors; None means the default embedder (all-MiniLM-L6-v2 on
        ONNX Runtime, int8, offline).
    dim : int, default=4
        Size of the ability and discrimination vectors.
    epochs : int, default=100
        Full-batch Adam steps.
    lr : float, default=0.03
        Adam learning rate.
    weight_decay : float, default=1e-3
        L2 penalty (``torch.optim.Adam``'s ``weight_decay``).
    random_state : int or None, default=None
        Seeds torch's initialisation; an int makes ``fit`` reproducible.

    The defaults were fixed a priori (not tuned on the shared datasets); ``TunedRouter`` with
    ``DEFAULT_GRIDS["irt"]`` chooses ``dim`` and ``weight_decay`` by inner cross-validation.

    Attributes
    ----------
    models_, costs_, quality_ : see ``BaseRouter``.
    abilities_ : ndarray of shape (n_models, dim)
        ``theta_m``.
    model_bias_ : ndarray of shape (n_models,)
        ``c_m``.
    discrimination_weight_ : ndarray of shape (dim, embedding_dim)
        ``A``.
    discrimination_bias_ : ndarray of shape (dim,)
        ``a0``.
    difficulty_weight_ : ndarray of shape (embedding_dim,)
        ``w``.
    loss_curve_ : ndarray of shape (epochs,)
        Training loss of each step.

    See Also
    --------
    MFRouter : a bilinear model of pairwise outcomes.

    Examples
    --------
    >>> outcomes = load_outcomes("../shared/data/zeroeval-crux")  # doctest: +SKIP
    >>> router = IRTRouter(random_state=0).fit(outcomes)  # doctest: +SKIP
    >>> router.win_matrix("What does f(3) return?")  # doctest: +SKIP
    """

    kind = "irt"

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        dim: int = 4,
        epochs: int = 100,
        lr: float = 0.03,
        weight_decay: float = 1e-3,
        random_state: int | None = None,
    ) -> None:
        self.embedder = embedder
        self.dim = dim
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.random_state = random_state

    def _validate_params(self) -> None:
        check_int("dim", self.dim)
        check_int("epochs", self.epochs)
        check_number("lr", self.lr, strict=True)
        check_number("weight_decay", self.weight_decay)
        check_random_state(self.random_state)

    def fit(self, outcomes: Outcomes | Battles) -> Self:
        """Train abilities and the prompt-side predictors on the measured scores."""
        if isinstance(outcomes, Battles):
            raise RouterConfigError(
                "IRTRouter learns from absolute scores (Outcomes), not pairwise battles; "
                "use SWRouter or MFRouter for battles"
            )
        _, _, embeddings = self._fit_inputs(outcomes, need_counts=False)
        assert isinstance(outcomes, Outcomes)
        scores = np.asarray(outcomes.scores, dtype=np.float64)
        known = ~np.isnan(scores)
        if not known.any():
            raise OutcomesError("no measured score to learn from", path=outcomes.source)
        with torch_single_thread():
            weights = self._train(embeddings, np.where(known, scores, 0.0), known)
        (self.abilities_, self.model_bias_, self.discrimination_weight_,
         self.discrimination_bias_, self.difficulty_weight_) = weights
        self._set_common_fitted(outcomes)
        return self

    def _train(
        self, embeddings: np.ndarray, targets: np.ndarray, known: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        import torch

        generator = torch.Generator().manual_seed(
            int(self.random_state) if self.random_state is not None
            else int(np.random.SeedSequence().entropy % (2**63))
        )
        n, d = embeddings.shape
        m = targets.shape[1]
        x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
        y = torch.from_numpy(targets.astype(np.float32))
        mask = torch.from_numpy(known.astype(np.float32))
        scale = 1.0 / np.sqrt(d)
        theta = torch.nn.Parameter(torch.randn(m, self.dim, generator=generator) * 0.1)
        bias = torch.nn.Parameter(torch.zeros(m))
        disc_w = torch.nn.Parameter(torch.randn(self.dim, d, generator=generator) * scale)
        disc_b = torch.nn.Parameter(torch.ones(self.dim))
        diff_w = torch.nn.Parameter(torch.zeros(d))
        params = [theta, bias, disc_w, disc_b, diff_w]
        optimiser = torch.optim.Adam(params, lr=float(self.lr),
                                     weight_decay=float(self.weight_decay))
        loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
        total = mask.sum()
        losses = np.empty(self.epochs)
        for step in range(self.epochs):
            optimiser.zero_grad()
            logits = (x @ disc_w.T + disc_b) @ theta.T - (x @ diff_w)[:, None] + bias
            loss = (loss_fn(logits, y) * mask).sum() / total
            loss.backward()
            optimiser.step()
            losses[step] = float(loss.detach())
        self.loss_curve_ = losses
        return tuple(p.detach().numpy().astype(np.float64) for p in params)

    # -- scoring ---------------------------------------------------------------------------------
    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        """Predicted P(good answer) of every model, shape (n_queries, n_models)."""
        self._check_is_fitted()
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        d = self.difficulty_weight_.shape[0]
        if queries.ndim != 2 or queries.shape[1] != d:
            raise ValueError(f"embeddings must have shape (n, {d}), got {np.shape(embeddings)}")
        disc = queries @ self.discrimination_weight_.T + self.discrimination_bias_
        logits = disc @ self.abilities_.T - (queries @ self.difficulty_weight_)[:, None]
        logits = logits + self.model_bias_
        out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * logits))
        return out

    def _win_matrices(self, embeddings: np.ndarray) -> np.ndarray:
        return quality_win_matrices(self.predict_quality(embeddings))

    # -- persistence -----------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {
            "abilities": self.abilities_,
            "model_bias": self.model_bias_,
            "discrimination_weight": self.discrimination_weight_,
            "discrimination_bias": self.discrimination_bias_,
            "difficulty_weight": self.difficulty_weight_,
            "loss_curve": self.loss_curve_,
        }
        return {}, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        for name in ("abilities", "model_bias", "discrimination_weight", "discrimination_bias",
                     "difficulty_weight", "loss_curve"):
            setattr(self, f"{name}_", np.ascontiguousarray(arrays[name], dtype=np.float64))
        m = len(self.models_)
        dim = self.abilities_.shape[1] if self.abilities_.ndim == 2 else -1
        if (
            self.abilities_.shape != (m, dim)
            or self.model_bias_.shape != (m,)
            or self.discrimination_weight_.shape != (dim, self.difficulty_weight_.shape[0])
            or self.discrimination_bias_.shape != (dim,)
        ):
            raise ValueError("array shapes do not match the model list and dim")
