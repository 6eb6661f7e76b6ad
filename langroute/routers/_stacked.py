"""Stacked ensemble: several routers' win matrices combined by weights fitted out of fold.

Each base router sees the training prompts through its own bias (local neighbours, clusters, a
low-rank model, IRT). ``StackedRouter`` fits every base on k - 1 inner folds and scores the
held-out one, so each training prompt gets *out-of-fold* win matrices from every base; a
logistic model then learns, on those, how much to trust each base:

    logit P(i beats j) = sum_b w_b * logit P_b(i beats j) + c_i - c_j

(antisymmetric, so ``P(i beats j) + P(j beats i) = 1`` still holds), weighted by the recorded
wins of every pair, fitted by torch's L-BFGS with a small L2 penalty. The bases are then refitted
on all the training data. Because a base with a bad setting simply gets a small weight, a fixed,
a-priori list of bases at a few settings (see ``DEFAULT_BASES``) replaces tuning them; the
weights are chosen on the training data only, so evaluating the ensemble by cross-validation is
nested by construction.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any, Self

import numpy as np

from .._exceptions import RouterConfigError
from .._outcomes import Battles, Outcomes, pairwise_counts
from ..embeddings import Embedder
from ._base import _REGISTRY, BaseRouter
from ._calibration_scores import (
    CALIBRATION_MAX_PROMPTS,
    CALIBRATION_SEED,
    calibration_scores_disabled,
    calibration_scores_enabled,
)
from ._irt import torch_single_thread
from ._validation import check_fit_data, check_int, check_number, check_random_state, nested_fits

__all__ = ["DEFAULT_BASES", "StackedRouter"]

#: (router kind, parameters) of the default bases, fixed a priori: a local and a wider kNN,
#: SW, many-cluster Avengers-Pro qualities and IRT.
DEFAULT_BASES: list[tuple[str, dict[str, Any]]] = [
    ("sw", {"gamma": 100.0}),
    ("knn", {"k": 25}),
    ("knn", {"k": 100}),
    ("cluster", {"per_cluster": "quality", "n_clusters": 32, "n_probe": 3, "random_state": 0}),
    ("irt", {"random_state": 0}),
]
_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    out: np.ndarray = np.log(q) - np.log1p(-q)
    return out


class StackedRouter(BaseRouter):
    """Stacked ensemble of routers, combined in logit space by out-of-fold-fitted weights.

    Parameters
    ----------
    embedder : Embedder, default=None
        Shared by every base router; None means all-MiniLM-L6-v2.
    bases : list of (kind, params), default=None
        Base routers by kind (``"sw"``, ``"knn"``, ``"cluster"``, ``"mf"``, ``"irt"``) and
        JSON parameters; None means ``DEFAULT_BASES``. kNN's ``k``, SW's ``top_k`` and the
        cluster count are capped at the inner training size.
    cv : int, default=3
        Inner folds for the out-of-fold predictions.
    alpha : float, default=1e-3
        L2 penalty on the combination weights (per recorded game).
    random_state : int, default=0
        Seeds the inner folds.

    Attributes
    ----------
    models_, costs_, quality_ : see ``BaseRouter``.
    weights_ : ndarray of shape (n_bases,)
        ``w_b``, one per base router.
    model_bias_ : ndarray of shape (n_models,)
        ``c_i``.
    base_routers_ : list of BaseRouter
        The bases refitted on all training data.
    """

    kind = "stacked"

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        bases: Sequence[Sequence[Any]] | None = None,
        cv: int = 3,
        alpha: float = 1e-3,
        random_state: int = 0,
    ) -> None:
        self.embedder = embedder
        self.bases = bases
        self.cv = cv
        self.alpha = alpha
        self.random_state = random_state

    def clone(self) -> Self:
        """An unfitted router with the same parameters. ``bases`` is deep-copied, as
        ``sklearn.base.clone`` copies every parameter that is not an estimator: the clone's
        list and params dicts are its own, so changing them in place (or anything that does)
        leaves this router alone. The embedder is shared, as by every router's ``clone``."""
        params = self.get_params()
        params["bases"] = copy.deepcopy(params["bases"])
        return type(self)(**params)

    def _base_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """The bases as (kind, params), each checked by building it: a badly formed entry is a
        RouterConfigError naming the base, not a TypeError deep inside ``fit``."""
        specs = DEFAULT_BASES if self.bases is None else self.bases
        if isinstance(specs, (str, bytes, dict)) or not isinstance(specs, Iterable):
            raise RouterConfigError(
                f"bases must be a list of (kind, params dict) pairs, got {specs!r}"
            )
        known = sorted(k for k in _REGISTRY if k not in ("stacked", "tuned"))
        out = []
        for b, spec in enumerate(specs):
            if (isinstance(spec, str) or not isinstance(spec, Sequence) or len(spec) != 2
                    or not isinstance(spec[1], dict)):
                raise RouterConfigError(f"each base must be (kind, params dict), got {spec!r}")
            kind, params = spec
            if not isinstance(kind, str) or kind not in known:
                raise RouterConfigError(
                    f"unknown base router kind {kind!r} (base {b}); use one of {known}"
                )
            out.append((kind, dict(params)))
            self._check_base(b, kind, dict(params))
        if not out:
            raise RouterConfigError("StackedRouter needs at least one base router")
        return out

    @staticmethod
    def _check_base(b: int, kind: str, params: dict[str, Any]) -> None:
        """Build base ``b`` (without an embedder: the shared one is set at fit) and run its own
        parameter checks, so a bad setting fails up front with the base named."""
        cls = _REGISTRY[kind]
        where = f"base {b} ({kind!r})"
        names = cls._param_names()
        for name in params:
            if not isinstance(name, str) or name not in names:
                raise RouterConfigError(
                    f"{where}: {cls.__name__} has no parameter {name!r}; its parameters are "
                    f"{[n for n in names if n != 'embedder']}"
                )
        if "embedder" in params:
            raise RouterConfigError(
                f"{where}: set the embedder on the StackedRouter (shared by every base), "
                "not in a base's params"
            )
        try:
            cls(**params)._validate_params()
        except RouterConfigError as exc:
            raise RouterConfigError(f"{where}: {exc}") from exc

    def _validate_params(self) -> None:
        self._base_specs()
        check_int("cv", self.cv, minimum=2)
        check_number("alpha", self.alpha)
        check_random_state(self.random_state)

    def _make_base(self, kind: str, params: dict[str, Any], n_train: int) -> BaseRouter:
        cls = _REGISTRY[kind]
        args = dict(params)
        for bound in ("k", "n_clusters", "top_k"):  # None: the base's default (SW's)
            if args.get(bound) is not None and args[bound] > n_train:
                args[bound] = n_train
        if "n_probe" in args and args.get("n_clusters") is not None:
            args["n_probe"] = min(args["n_probe"], args["n_clusters"])
        if "embedder" in cls._param_names():
            args["embedder"] = self._resolve_embedder()
        return cls(**args)

    def fit(self, outcomes: Outcomes | Battles) -> Self:
        """Out-of-fold win matrices of every base, the combining weights, then the bases refit."""
        from ..evaluation._splits import make_splits

        self._validate_params()
        specs = self._base_specs()
        if isinstance(outcomes, Battles):
            raise RouterConfigError("StackedRouter learns from Outcomes, not pairwise battles")
        if not isinstance(outcomes, Outcomes):
            raise TypeError("fit() takes Outcomes or Battles (StackedRouter: Outcomes only), "
                            f"got {type(outcomes).__name__}")
        check_fit_data(outcomes)
        embedder = self._resolve_embedder()
        embeddings = embedder.embed(list(outcomes.prompts))
        _, counts = pairwise_counts(outcomes)
        n, m = len(outcomes), len(outcomes.models)
        oof = np.empty((len(specs), n, m, m))
        for sp in make_splits(outcomes.prompts, folds=self.cv, seeds=[self.random_state]):
            train = outcomes.subset(sp.train)
            for b, (kind, params) in enumerate(specs):
                # Base fits are never calibrated; a fold may leave out a model's few scores.
                with calibration_scores_disabled(), nested_fits():
                    base = self._make_base(kind, params, len(sp.train)).fit(train)
                oof[b][sp.test] = base.win_matrices_from_embeddings(embeddings[sp.test])
        with torch_single_thread():
            self.weights_, self.model_bias_ = _fit_combiner(oof, counts, float(self.alpha))
        with calibration_scores_disabled(), nested_fits():  # checked above
            self.base_routers_ = [self._make_base(kind, params, n).fit(outcomes)
                                  for kind, params in specs]
        self._set_common_fitted(outcomes)
        if calibration_scores_enabled():
            # The out-of-fold base predictions, combined: scores of prompts no base was fitted
            # on (the combination weights were, which is a small optimism for calibration).
            rng = np.random.default_rng(CALIBRATION_SEED)
            kept = (np.arange(n) if n <= CALIBRATION_MAX_PROMPTS
                    else np.sort(rng.choice(n, CALIBRATION_MAX_PROMPTS, replace=False)))
            self.calibration_win_matrices_ = self._combine(
                [oof[b][kept] for b in range(len(specs))]).astype(np.float32)
            self._calibration_note = ""
        return self

    def _win_matrices(self, embeddings: np.ndarray) -> np.ndarray:
        return self._combine([base.win_matrices_from_embeddings(embeddings)
                              for base in self.base_routers_])

    def _combine(self, base_wins: list[np.ndarray]) -> np.ndarray:
        """The combined win matrices from each base's, (n, M, M) each."""
        logits = sum(w * _logit(win) for w, win in zip(self.weights_, base_wins, strict=True))
        logits = logits + self.model_bias_[:, None] - self.model_bias_[None, :]
        win: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * logits))
        diag = np.arange(win.shape[1])
        win[:, diag, diag] = 0.5
        return win

    # -- persistence -----------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {"weights": self.weights_, "model_bias": self.model_bias_}
        states = []
        for b, base in enumerate(self.base_routers_):
            state, base_arrays = base._get_state()
            states.append({"kind": base.kind, "state": state, "params": {
                k: v for k, v in base.get_params().items() if k != "embedder"}})
            arrays.update({f"base{b}/{k}": v for k, v in base_arrays.items()})
        return {"bases_": states}, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.weights_ = np.ascontiguousarray(arrays["weights"], dtype=np.float64)
        self.model_bias_ = np.ascontiguousarray(arrays["model_bias"], dtype=np.float64)
        bases = []
        for b, entry in enumerate(state["bases_"]):
            cls = _REGISTRY.get(entry["kind"])
            if cls is None or entry["kind"] in ("stacked", "tuned"):
                raise ValueError(f"unknown base router kind {entry['kind']!r}")
            params = dict(entry["params"])
            if "embedder" in cls._param_names():
                params["embedder"] = self.embedder
            base = cls(**params)
            base._validate_params()
            base.models_, base.costs_, base.quality_ = self.models_, self.costs_, self.quality_
            prefix = f"base{b}/"
            base._set_state(dict(entry["state"]),
                            {k[len(prefix):]: v for k, v in arrays.items()
                             if k.startswith(prefix)})
            base._new_fit_version()
            bases.append(base)
        self.base_routers_ = bases
        if self.weights_.shape != (len(bases),) or self.model_bias_.shape != (len(self.models_),):
            raise ValueError("weights do not match the bases and models")


def _fit_combiner(
    oof: np.ndarray, counts: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and model biases of the logistic combination (torch L-BFGS)."""
    import torch

    n_bases, _, m, _ = oof.shape
    upper = np.triu_indices(m, k=1)
    wins = counts[:, upper[0], upper[1]].ravel()
    losses = counts[:, upper[1], upper[0]].ravel()
    games = wins + losses
    keep = games > 0
    feats = np.stack([_logit(oof[b][:, upper[0], upper[1]]).ravel()[keep]
                      for b in range(n_bases)], axis=1)
    pair_i = np.broadcast_to(upper[0], (oof.shape[1], len(upper[0]))).ravel()[keep]
    pair_j = np.broadcast_to(upper[1], (oof.shape[1], len(upper[1]))).ravel()[keep]
    x = torch.from_numpy(feats)
    target = torch.from_numpy(wins[keep] / games[keep])
    weight = torch.from_numpy(games[keep] / games[keep].sum())
    w = torch.zeros(n_bases, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(m, dtype=torch.float64, requires_grad=True)
    ii, jj = torch.from_numpy(pair_i.copy()), torch.from_numpy(pair_j.copy())
    optimiser = torch.optim.LBFGS([w, c], max_iter=200, line_search_fn="strong_wolfe")
    loss_fn = torch.nn.BCEWithLogitsLoss(weight=weight, reduction="sum")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        logits = x @ w + c[ii] - c[jj]
        loss = loss_fn(logits, target) + alpha * (w.pow(2).sum() + c.pow(2).sum())
        loss.backward()
        return loss

    optimiser.step(closure)
    return w.detach().numpy().copy(), c.detach().numpy().copy()
