"""What every router is: fit on outcomes, score a prompt as a win matrix, save and load.

The contract follows scikit-learn's estimators: ``__init__`` only stores its arguments, ``fit``
validates and learns (public attributes ending in ``_``) and returns ``self``, scoring methods are
pure and start by checking the router is fitted. Every router answers the same question -- for
this prompt, P(model i beats model j) for all i, j -- so one routing policy serves them all.
"""

from __future__ import annotations

import inspect
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, overload

import numpy as np

from .._exceptions import NotFittedError, OutcomesError, RouterConfigError, RouterFileError
from .._outcomes import Battles, Outcomes, pairwise_counts
from .._persistence import read_router_file, write_router_file
from ..embeddings import Embedder, SentenceTransformerEmbedder, embedder_from_config

__all__ = ["BaseRouter", "load_router"]

_REGISTRY: dict[str, type[BaseRouter]] = {}


class BaseRouter(ABC):
    """Base class of langroute routers.

    Subclasses implement ``fit``, ``_win_matrices(embeddings)`` (or override ``win_matrices``),
    and ``_get_state`` / ``_set_state`` for persistence.

    Attributes (set by ``fit``)
    ---------------------------
    models_ : list of str
        Model names, the row/column order of every win matrix.
    costs_ : ndarray of shape (n_models,) or None
        Mean USD per call of each model in the training outcomes (None for battles).
    quality_ : ndarray of shape (n_models,)
        Mean training quality of each model (for battles: overall win rate).
    """

    #: Name in saved files; subclasses set it and are registered for ``load_router``.
    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls

    # -- parameters -----------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        names = []
        for name, p in sig.parameters.items():
            if name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ may not take *args or **kwargs")
            names.append(name)
        return names

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` arguments, as stored."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Change ``__init__`` arguments (takes effect at the next ``fit``)."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise RouterConfigError(f"{type(self).__name__} has no parameter {name!r}")
            setattr(self, name, value)
        return self

    def clone(self) -> Self:
        """An unfitted router with the same parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _validate_params(self) -> None:
        """Check ``__init__`` arguments (raise RouterConfigError); called by ``fit`` and ``load``.

        The base router has none to check; subclasses with parameters override it.
        """
        return None

    # -- fitting and scoring ----------------------------------------------------------------------
    @abstractmethod
    def fit(self, outcomes: Outcomes | Battles) -> Self:
        """Learn from recorded outcomes; returns ``self``."""
        raise NotImplementedError(f"{type(self).__name__} must implement fit()")

    @overload
    def _fit_inputs(
        self,
        data: Outcomes | Battles,
        embeddings: np.ndarray | None = None,
        *,
        need_counts: Literal[True] = True,
    ) -> tuple[list[str], np.ndarray, np.ndarray]: ...

    @overload
    def _fit_inputs(
        self,
        data: Outcomes | Battles,
        embeddings: np.ndarray | None = None,
        *,
        need_counts: bool,
    ) -> tuple[list[str], np.ndarray | None, np.ndarray]: ...

    def _fit_inputs(
        self,
        data: Outcomes | Battles,
        embeddings: np.ndarray | None = None,
        *,
        need_counts: bool = True,
    ) -> tuple[list[str], np.ndarray | None, np.ndarray]:
        """The start of every ``fit``: check parameters and data, count wins, embed prompts.

        Returns ``(prompts, counts, embeddings)``: the training prompts, their win counts
        (n, M, M) from ``pairwise_counts`` and their embeddings (n, dim) float32. Routers that
        keep the raw scores pass ``need_counts=False`` to skip the counts of Outcomes (None is
        returned; Battles always get counts, their prompts come from pairing the battles).
        ``embeddings`` are the prompts already embedded by this router's embedder; otherwise
        they are embedded here, after ``_check_training_data`` so bad data fails fast.
        """
        self._validate_params()
        if not isinstance(data, (Outcomes, Battles)):
            raise TypeError(f"fit() takes Outcomes or Battles, got {type(data).__name__}")
        if len(data.models) < 2:
            raise OutcomesError(f"routing needs at least 2 models, got {list(data.models)}")
        counts: np.ndarray | None
        if need_counts or isinstance(data, Battles):
            prompts, counts = pairwise_counts(data)
        else:
            prompts, counts = list(data.prompts), None
        self._check_training_data(prompts, counts)
        n = len(prompts)
        if embeddings is None:
            vectors = self._resolve_embedder().embed(prompts)
        else:
            vectors = np.asarray(embeddings, dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != n:
                raise ValueError(
                    f"embeddings must have shape ({n}, dim) for {n} training prompts, "
                    f"got {np.shape(embeddings)}"
                )
        return prompts, counts, vectors

    def _check_training_data(self, prompts: list[str], counts: np.ndarray | None) -> None:
        """Refuse training data this router cannot learn from (before embedding it).

        ``counts`` is None when ``_fit_inputs`` was asked not to build them. No check here;
        subclasses override it.
        """
        return None

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "models_")

    def _check_is_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(outcomes) or "
                f"{type(self).__name__}.load(path) first"
            )

    @property
    def models(self) -> list[str]:
        """Model names in the fixed order of every win matrix."""
        self._check_is_fitted()
        return list(self.models_)

    def _resolve_embedder(self) -> Embedder:
        """The router's embedder: the one given, or the default MiniLM (created once)."""
        embedder = getattr(self, "embedder", None)
        if embedder is None:
            cached = getattr(self, "_default_embedder", None)
            if cached is None:
                cached = SentenceTransformerEmbedder()
                self._default_embedder = cached
            return cached
        if not isinstance(embedder, Embedder):
            raise RouterConfigError(
                f"embedder must be a langroute Embedder, got {type(embedder).__name__}"
            )
        return embedder

    def win_matrix(self, prompt: str) -> np.ndarray:
        """P(row model beats column model) for ``prompt``, shape (n_models, n_models)."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        return self.win_matrices([prompt])[0]

    def win_matrices(self, prompts: Sequence[str]) -> np.ndarray:
        """Batched ``win_matrix``: shape (n_prompts, n_models, n_models)."""
        self._check_is_fitted()
        if isinstance(prompts, str):
            raise TypeError("win_matrices() takes a sequence of prompts, not a single str")
        embeddings = self._resolve_embedder().embed(list(prompts))
        return self.win_matrices_from_embeddings(embeddings)

    def win_matrices_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """``win_matrices`` for prompts already embedded by this router's embedder."""
        self._check_is_fitted()
        return self._win_matrices(np.asarray(embeddings, dtype=np.float32))

    @abstractmethod
    def _win_matrices(self, embeddings: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _win_matrices()")

    def _new_fit_version(self) -> None:
        """Mark the learned state as changed: policies keyed on ``fit_version_`` rebuild.

        Called by ``fit``, ``load`` and every method that changes what the router learned
        (``partial_fit``, ``add_model``). A fresh random token, never an ``id()`` that a freed
        array's address could repeat.
        """
        self.fit_version_ = uuid.uuid4().hex

    def _set_common_fitted(self, data: Outcomes | Battles) -> None:
        self._new_fit_version()
        self.models_ = list(data.models)
        if isinstance(data, Outcomes):
            self.costs_ = data.mean_costs()
            self.quality_ = data.mean_scores()
        else:
            m = len(data.models)
            wins = np.zeros(m)
            games = np.zeros(m)
            np.add.at(wins, data.model_a, data.result)
            np.add.at(wins, data.model_b, 1.0 - data.result)
            np.add.at(games, data.model_a, 1.0)
            np.add.at(games, data.model_b, 1.0)
            self.costs_ = None
            self.quality_ = np.divide(wins, games, out=np.full(m, np.nan), where=games > 0)

    # -- persistence ------------------------------------------------------------------------------
    @abstractmethod
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON state and arrays that, with ``get_params()``, rebuild the fitted router."""

    @abstractmethod
    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Inverse of ``_get_state`` on a freshly constructed router."""

    def _params_for_file(self) -> dict[str, Any]:
        params = self.get_params()
        embedder = params.get("embedder")
        if isinstance(embedder, Embedder):
            params["embedder"] = {"kind": embedder.kind, **embedder.get_config()}
        return params

    def save(self, path: str | Path) -> None:
        """Write the fitted router to ``path`` (safetensors + JSON header; no pickle)."""
        self._check_is_fitted()
        state, arrays = self._get_state()
        common = {
            "models_": list(self.models_),
            "costs_": None if self.costs_ is None else [float(c) for c in self.costs_],
            "quality_": [float(q) for q in self.quality_],
        }
        write_router_file(
            path, kind=self.kind, params=self._params_for_file(), state={**state, **common},
            arrays=arrays,
        )

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a router written by ``save``; raises RouterFileError if it cannot be trusted."""
        kind, params, state, arrays = read_router_file(path)
        target = _REGISTRY.get(kind)
        if target is None:
            raise RouterFileError(
                f"{path}: unknown router kind {kind!r}; known {sorted(_REGISTRY)}"
            )
        if cls is not BaseRouter and not issubclass(target, cls):
            raise RouterFileError(f"{path}: holds a {target.__name__}, not a {cls.__name__}")
        try:
            if isinstance(params.get("embedder"), dict):
                params["embedder"] = embedder_from_config(params["embedder"])
            router = target(**params)
            router._validate_params()
            router.models_ = [str(m) for m in state.pop("models_")]
            costs = state.pop("costs_")
            router.costs_ = None if costs is None else np.asarray(costs, dtype=np.float64)
            router.quality_ = np.asarray(state.pop("quality_"), dtype=np.float64)
            router._set_state(state, arrays)
            router._new_fit_version()
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, RouterFileError):
                raise
            raise RouterFileError(f"{path}: inconsistent {kind} router file ({exc})") from exc
        return router  # type: ignore[return-value]


def load_router(path: str | Path) -> BaseRouter:
    """Load any saved langroute router, whatever its class."""
    return BaseRouter.load(path)
