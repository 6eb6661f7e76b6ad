"""Hyperparameters chosen by inner cross-validation on the training data only (nested CV).

A figure measured on the prompts that chose a router's settings is optimistic. ``TunedRouter``
is a router whose ``fit`` runs a small grid search by k-fold cross-validation *inside its own
training data*, keeps the setting with the best held-out score and refits it on all of that data.
Evaluated by ``evaluate`` (which fits every router on the training folds of each outer fold), it
is nested cross-validation: every hyperparameter behind a reported figure was chosen without
seeing that figure's test prompts. ``langroute eval DATASET --tune`` and
``benchmarks/bench_eval_sweep.py`` use it.

The inner score is the one the reports lead with: the router's AIQ minus the single-model
hull's AIQ on the validation fold (``scoring="aiq"``), or APGR for two models
(``scoring="apgr"``). Grids are fixed a priori in ``DEFAULT_GRIDS`` (broad, roughly log-spaced
ranges around the published settings), never fitted to the shared datasets.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np

from .._exceptions import OutcomesError, RouterConfigError
from .._outcomes import Battles, Outcomes, first_gap
from ..embeddings import Embedder
from ..routers import BaseRouter
from ..routers._base import _REGISTRY
from ..routers._calibration_scores import calibration_scores_disabled
from ..routers._validation import check_fit_data, check_int, check_random_state, nested_fits
from ._metrics import aiq, apgr, pgr_curve, threshold_sweep
from ._registry import make_router
from ._splits import make_splits

__all__ = ["DEFAULT_GRIDS", "SCORINGS", "TunedRouter", "tuned_router", "validation_score"]

#: Candidate settings per router name, chosen a priori (not on the shared datasets).
#: kNN's ``k`` and the cluster count are capped at the inner training size when needed.
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "sw": {"gamma": [10.0, 30.0, 100.0]},
    "knn": {"k": [25, 100, 200]},
    "cluster": {"n_clusters": [2, 8, 32]},
    "mf": {"epochs": [10, 40]},
    "irt": {"dim": [2, 8]},
    "avengers": {"n_clusters": [16, 64]},
    "stacked": {},
}
SCORINGS = ("aiq", "apgr")
#: Parameters whose value may not exceed the number of training prompts.
_SIZE_BOUND = ("k", "n_clusters")


def validation_score(
    router: BaseRouter, val: Outcomes, embeddings: np.ndarray, scoring: str = "aiq"
) -> float:
    """Held-out score of a fitted ``router`` on ``val`` (prompts already embedded).

    ``"aiq"``: the AIQ of the escalation ladder's exact cost-quality curve minus the
    single-model hull's AIQ, over ``val``'s own cost range. ``"apgr"``: APGR of P(strong wins)
    (two models only; the strong model is the pricier one on the router's training data).
    """
    from .._calibration import routing_ladder

    if val.costs is None:
        raise RouterConfigError("validation needs outcomes with costs")
    win = router.win_matrices_from_embeddings(embeddings)
    if scoring == "apgr":
        if len(router.models_) != 2 or router.costs_ is None:
            raise RouterConfigError("scoring='apgr' needs two models with costs")
        strong = int(np.argmax(router.costs_))
        weak = 1 - strong
        shares, pgr = pgr_curve(win[:, strong, weak], val.scores[:, weak], val.scores[:, strong])
        return apgr(shares, pgr) if np.all(np.isfinite(pgr)) else 0.5
    if scoring != "aiq":
        raise RouterConfigError(f"unknown scoring {scoring!r}; choose one of {SCORINGS}")
    ladder = routing_ladder(router)
    curve = threshold_sweep(ladder.levels(win), ladder.columns[ladder.rungs], val.scores,
                            val.costs)
    model_costs, model_q = val.costs.mean(axis=0), val.scores.mean(axis=0)
    span = (float(model_costs.min()), float(model_costs.max()))
    return (aiq(curve.costs, curve.qualities, cost_range=span)
            - aiq(model_costs, model_q, cost_range=span))


class TunedRouter(BaseRouter):
    """A router whose hyperparameters are chosen by inner k-fold CV on its training data.

    Parameters
    ----------
    router : str, default="sw"
        Name of the router to tune (``langroute.evaluation.router_names()``).
    embedder : Embedder, default=None
        Given to the tuned router; None means all-MiniLM-L6-v2. Training prompts are embedded
        once (the embedder caches vectors), however many settings are tried.
    param_grid : dict of str to list, default=None
        Candidate values per parameter (all combinations are tried); None means
        ``DEFAULT_GRIDS[router]``.
    base_params : dict, default=None
        Fixed parameters of the tuned router (JSON values), e.g. ``{"random_state": 0}``.
    cv : int, default=3
        Inner folds.
    scoring : {"aiq", "apgr"}, default="aiq"
        Inner score, see ``validation_score``.
    max_tune_prompts : int, default=None
        If set, the grid search uses a random subsample of this many training prompts (the
        final refit always uses all of them); bounds the cost on large datasets.
    random_state : int, default=0
        Seeds the inner splits and the subsample.

    Attributes
    ----------
    models_, costs_, quality_ : see ``BaseRouter``.
    best_params_ : dict
        The chosen setting.
    best_score_ : float
        Its mean inner validation score.
    cv_results_ : dict
        ``params``, ``mean_score``, ``std_score`` for every candidate, in grid order.
    best_router_ : BaseRouter
        The chosen setting refitted on all training data; it scores every prompt.
    """

    kind = "tuned"

    def __init__(
        self,
        router: str = "sw",
        *,
        embedder: Embedder | None = None,
        param_grid: Mapping[str, Sequence[Any]] | None = None,
        base_params: Mapping[str, Any] | None = None,
        cv: int = 3,
        scoring: str = "aiq",
        max_tune_prompts: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.router = router
        self.embedder = embedder
        self.param_grid = param_grid
        self.base_params = base_params
        self.cv = cv
        self.scoring = scoring
        self.max_tune_prompts = max_tune_prompts
        self.random_state = random_state

    def _validate_params(self) -> None:
        if not isinstance(self.router, str):
            raise RouterConfigError(f"router must be a router name, got {self.router!r}")
        if self.router == "tuned":
            raise RouterConfigError("a TunedRouter cannot tune another TunedRouter")
        if make_router(self.router).learns_embedder:
            raise RouterConfigError(
                f"a TunedRouter embeds the prompts once and cannot tune {self.router!r}, which "
                f"learns its own encoder; tune its inner router instead: "
                f"tuned_router({self.router!r}) or ContrastiveRouter(router=TunedRouter('sw'))"
            )
        check_int("cv", self.cv, minimum=2)
        check_int("max_tune_prompts", self.max_tune_prompts, minimum=10, optional=True)
        check_random_state(self.random_state)
        if self.scoring not in SCORINGS:
            raise RouterConfigError(f"unknown scoring {self.scoring!r}; choose one of {SCORINGS}")
        grid = self._grid()
        for name, values in grid.items():
            if isinstance(values, str) or not isinstance(values, Sequence) or not values:
                raise RouterConfigError(
                    f"param_grid[{name!r}] must be a non-empty list of values, got {values!r}"
                )
        if self.base_params is not None and not isinstance(self.base_params, Mapping):
            raise RouterConfigError(f"base_params must be a dict, got {self.base_params!r}")

    def _grid(self) -> dict[str, Sequence[Any]]:
        if self.param_grid is not None:
            if not isinstance(self.param_grid, Mapping):
                raise RouterConfigError(f"param_grid must be a dict, got {self.param_grid!r}")
            return dict(self.param_grid)
        if self.router not in DEFAULT_GRIDS:
            raise RouterConfigError(
                f"no default grid for router {self.router!r}; pass param_grid= "
                f"(default grids: {sorted(DEFAULT_GRIDS)})"
            )
        return dict(DEFAULT_GRIDS[self.router])

    def _base(self, embedder: Embedder) -> BaseRouter:
        base = make_router(self.router, embedder)
        if self.base_params:
            base.set_params(**dict(self.base_params))
        return base

    def candidates(self, n_train: int) -> list[dict[str, Any]]:
        """Every setting tried when the inner training folds hold ``n_train`` prompts."""
        grid = self._grid()
        names = list(grid)
        out: list[dict[str, Any]] = []
        for values in itertools.product(*(grid[n] for n in names)):
            params = dict(zip(names, values, strict=True))
            for bound in _SIZE_BOUND:
                if bound in params and params[bound] > n_train:
                    params[bound] = n_train
            if params not in out:
                out.append(params)
        return out

    def fit(self, outcomes: Outcomes | Battles) -> Self:
        """Grid-search by inner CV on ``outcomes``, then refit the best setting on all of it."""
        self._validate_params()
        if not isinstance(outcomes, Outcomes):
            raise TypeError(
                f"TunedRouter.fit takes Outcomes (with costs), got {type(outcomes).__name__}"
            )
        if outcomes.costs is None:
            raise RouterConfigError(
                "TunedRouter scores settings by cost and quality; the outcomes have no costs "
                "(use outcomes.with_estimated_costs(output_tokens))"
            )
        check_fit_data(outcomes)
        embedder = self._resolve_embedder()
        data = outcomes
        if self.max_tune_prompts is not None and len(data) > self.max_tune_prompts:
            rng = np.random.default_rng(self.random_state)
            rows = np.sort(rng.choice(len(data), self.max_tune_prompts, replace=False))
            data = data.subset(rows)
        splits = make_splits(data.prompts, folds=self.cv, seeds=[self.random_state])
        smallest = min(len(sp.train) for sp in splits)
        settings = self.candidates(smallest)
        if len(settings) == 1:  # nothing to choose: no inner CV
            splits = []
        else:
            _check_complete(data, self.scoring)
        embeddings = embedder.embed(list(data.prompts))
        scores = np.full((len(settings), max(len(splits), 1)), np.nan)
        for j, sp in enumerate(splits):
            train, val = data.subset(sp.train), data.subset(sp.test)
            for i, params in enumerate(settings):
                # Inner fits are never calibrated; a fold may leave out a model's few scores.
                with calibration_scores_disabled(), nested_fits():
                    fitted = self._base(embedder).set_params(**params).fit(train)
                scores[i, j] = validation_score(fitted, val, embeddings[sp.test], self.scoring)
        means = scores.mean(axis=1)
        best = 0 if len(settings) == 1 else int(np.argmax(means))  # ties: first in grid order
        best_params = dict(settings[best])
        self.best_router_ = self._base(embedder).set_params(**best_params).fit(outcomes)
        self.best_params_ = best_params
        self.best_score_ = float(means[best])
        self.cv_results_ = {
            "params": settings,
            "mean_score": [float(v) for v in means],
            "std_score": [float(v) for v in scores.std(axis=1)],
            "n_tune_prompts": len(data),
        }
        self._set_common_fitted(outcomes)
        # Calibration scores: the chosen router's own out-of-fold scores of the training prompts.
        self.calibration_win_matrices_ = getattr(self.best_router_, "calibration_win_matrices_",
                                                 None)
        self._calibration_note = getattr(self.best_router_, "_calibration_note", "")
        return self

    def _win_matrices(self, embeddings: np.ndarray) -> np.ndarray:
        return self.best_router_.win_matrices_from_embeddings(embeddings)

    # -- persistence -----------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        inner_state, inner_arrays = self.best_router_._get_state()
        inner_params = {k: v for k, v in self.best_router_.get_params().items()
                        if k != "embedder"}
        state = {
            "best_params_": self.best_params_,
            "best_score_": self.best_score_,
            "cv_results_": self.cv_results_,
            "best_kind": self.best_router_.kind,
            "best_router_params": inner_params,
            "best_router_state": inner_state,
        }
        return state, {f"best/{k}": v for k, v in inner_arrays.items()}

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        kind = state["best_kind"]
        cls = _REGISTRY.get(kind)
        if cls is None or cls is TunedRouter:
            raise ValueError(f"unknown tuned router kind {kind!r}")
        params = dict(state["best_router_params"])
        if "embedder" in cls._param_names():
            params["embedder"] = self.embedder
        inner = cls(**params)
        inner._validate_params()
        inner.models_, inner.costs_, inner.quality_ = self.models_, self.costs_, self.quality_
        inner._set_state(dict(state["best_router_state"]),
                         {k[5:]: v for k, v in arrays.items() if k.startswith("best/")})
        inner._new_fit_version()
        self.best_router_ = inner
        self.best_params_ = dict(state["best_params_"])
        self.best_score_ = float(state["best_score_"])
        self.cv_results_ = dict(state["cv_results_"])


def _check_complete(data: Outcomes, scoring: str) -> None:
    """Refuse gaps before the inner CV, which compares settings by every model's quality (and
    for ``"aiq"`` cost) on each held-out prompt (``validation_score``)."""
    assert data.costs is not None  # checked by fit
    gap = first_gap(data, ("scores", "costs") if scoring == "aiq" else ("scores",))
    if gap is not None:
        name, count, first = gap
        raise OutcomesError(
            f"TunedRouter compares settings by every model's {name[:-1]} on held-out "
            f"prompts, but {count} of {len(data)} tuning prompts lack a {name[:-1]} for some "
            f"model (the first: id {first!r}); drop those prompts "
            f"(outcomes.subset(~np.isnan(outcomes.{name}).any(axis=1))) or give "
            "param_grid a single setting",
            path=data.source,
        )


def tuned_router(
    name: str, params: Mapping[str, Any] | None = None, embedder: Embedder | None = None,
    *, max_tune_prompts: int | None = None,
) -> BaseRouter:
    """``TunedRouter`` of ``name`` with ``params`` fixed and the rest of its default grid tuned.

    Parameters given explicitly (e.g. ``--router knn:k=32 --tune``) are left out of the grid.
    A router that learns its own encoder (``contrastive``) keeps ``params`` and gets its inner
    router (``params["router"]``, default ``"sw"``) tuned on the fine-tuned embeddings, inside
    each fit: ``ContrastiveRouter(router=TunedRouter("sw"), **params)``. The tuning settings
    (e.g. ``max_tune_prompts``) are checked here, so a bad one fails before any data is read
    rather than in every fold of an evaluation.
    """
    fixed = dict(params or {})
    template = make_router(name)
    if template.learns_embedder:
        inner = fixed.pop("router", "sw")
        if not isinstance(inner, str):
            raise RouterConfigError(f"the inner router of {name!r} must be a router name to "
                                    f"tune, got {inner!r}")
        tuned = tuned_router(inner, None, None, max_tune_prompts=max_tune_prompts)
        return template.set_params(router=tuned, **fixed)  # type: ignore[return-value]
    grid = {k: v for k, v in DEFAULT_GRIDS.get(name, {}).items() if k not in fixed}
    tuned = TunedRouter(name, embedder=embedder, param_grid=grid, base_params=fixed or None,
                        max_tune_prompts=max_tune_prompts)
    tuned._validate_params()
    return tuned
