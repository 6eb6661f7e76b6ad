"""What every router is: fit on outcomes, score a prompt as a win matrix, save and load.

The contract follows scikit-learn's estimators: ``__init__`` only stores its arguments, ``fit``
validates and learns (public attributes ending in ``_``) and returns ``self``, scoring methods are
pure and start by checking the router is fitted. Every router answers the same question -- for
this prompt, P(model i beats model j) for all i, j -- so one routing policy serves them all.
"""

from __future__ import annotations

import inspect
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, overload

import numpy as np

from .._exceptions import NotFittedError, RouterConfigError, RouterFileError
from .._outcomes import Battles, Outcomes, pairwise_counts
from .._persistence import read_router_file, write_router_file
from ..embeddings import (
    Embedder,
    check_fingerprint,
    default_embedder,
    embedder_fingerprint,
    embedder_spec,
    trusted_embedder,
)
from ._calibration_scores import calibration_scores_enabled, out_of_fold_win_matrices
from ._validation import check_fit_data

__all__ = ["BaseRouter", "load_router"]

_REGISTRY: dict[str, type[BaseRouter]] = {}
#: Array name of ``calibration_win_matrices_`` in router files.
_CALIBRATION_ARRAY = "calibration_win_matrices"
#: State key of the embedder record (spec + fingerprint) in router files.
_EMBEDDER_STATE = "embedder_record"


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
    calibration_win_matrices_ : ndarray of shape (n, n_models, n_models), float32, or None
        Out-of-fold win matrices of up to 2,000 training prompts, each from a clone refitted
        without that prompt's fold (see ``routers._calibration_scores``); what
        ``calibrate_threshold(router, strong_fraction=...)`` uses when given no prompts. None
        inside ``calibration_scores_disabled()`` or when the data is too small to refit.
    """

    #: Name in saved files; subclasses set it and are registered for ``load_router``.
    kind: ClassVar[str] = ""
    #: True for routers that learn their embedder in ``fit`` (no ``embedder`` parameter):
    #: ``save`` records ``_embedder_to_record()``, ``load`` rebuilds it with the router file's
    #: path (see ``ContrastiveRouter``) and hands it over by ``_use_learned_embedder``.
    learns_embedder: ClassVar[bool] = False

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
        """Change ``__init__`` arguments. Those that only say how a prompt is scored (SW's
        ``gamma``, ``top_k``, ``prior``, ``normalize``, ``n_probe``; kNN's ``k`` and
        ``prior``) change a fitted router's scores at once, as in scikit-learn's neighbour
        estimators; the rest take effect at the next ``fit``. The calibration scores kept by
        the last ``fit`` (``calibration_win_matrices_``) are not recomputed: refit before
        calibrating."""
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
        check_fit_data(data)
        counts: np.ndarray | None
        if need_counts or isinstance(data, Battles):
            prompts, counts = pairwise_counts(data)
        else:
            prompts, counts = list(data.prompts), None
        self._check_training_data(prompts, counts)
        n = len(prompts)
        if embeddings is None:
            # An out-of-fold calibration clone gets its rows of the parent's embeddings.
            embeddings = self.__dict__.pop("_calibration_embeddings", None)
        if embeddings is None:
            vectors = self._resolve_embedder().embed(prompts)
        else:
            vectors = np.asarray(embeddings, dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != n:
                raise ValueError(
                    f"embeddings must have shape ({n}, dim) for {n} training prompts, "
                    f"got {np.shape(embeddings)}"
                )
        # Read back by ``_set_common_fitted`` at the end of ``fit`` for the calibration scores.
        self._pending_calibration = (data, vectors)
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
        """The router's embedder: the one given, or ``default_embedder()`` (created once)."""
        embedder = getattr(self, "embedder", None)
        if embedder is None:
            cached = getattr(self, "_default_embedder", None)
            if cached is None:
                cached = default_embedder()
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
        vectors = np.asarray(embeddings, dtype=np.float32)
        if not np.all(np.isfinite(vectors)):
            # Caller-made vectors (embedders check their own): MF and IRT turned a NaN into NaN
            # win probabilities, kNN and cluster into an arbitrary neighbour or cluster.
            raise ValueError("query embeddings contain NaN or infinite values")
        return self._win_matrices(vectors)

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

    def _calibration_clone(self, n_train: int) -> BaseRouter:
        """Unfitted router refitted on ``n_train`` prompts for out-of-fold calibration scores.

        The default is ``clone()``; a router whose parameters can exceed a smaller training
        set (kNN's ``k``) lowers them here.
        """
        return self.clone()

    def _keep_calibration_scores(self, data: Outcomes | Battles) -> None:
        """Set ``calibration_win_matrices_`` (None when switched off or the data is too small)."""
        pending = self.__dict__.pop("_pending_calibration", None)
        self.calibration_win_matrices_: np.ndarray | None = None
        self._calibration_note = "it was fitted inside calibration_scores_disabled()"
        if not calibration_scores_enabled():
            # Before the next check: a router that keeps its own scores (StackedRouter) never
            # goes through _fit_inputs, and a user is told why they are missing.
            return
        if pending is None:
            self._calibration_note = f"{type(self).__name__}.fit did not go through _fit_inputs"
            return
        fitted_on, vectors = pending
        if fitted_on is not data:
            self._calibration_note = "it was fitted on data other than its embedded prompts"
            return
        matrices, self._calibration_note = out_of_fold_win_matrices(self, data, vectors)
        self.calibration_win_matrices_ = matrices

    def _set_common_fitted(self, data: Outcomes | Battles) -> None:
        self._new_fit_version()
        self._keep_calibration_scores(data)
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
            params["embedder"] = embedder_spec(embedder)
        return params

    def warm_up(self) -> float:
        """Load the embedding model and run it once; returns the seconds it took.

        Call it at start-up (``load`` does) so the first routed request does not pay for
        loading a model inside its latency.
        """
        if "embedder" not in self._param_names():
            return 0.0
        return self._resolve_embedder().warm_up()

    def save(self, path: str | Path, *, signing_key: str | bytes | None = None) -> None:
        """Write the fitted router to ``path`` (safetensors + JSON header; no pickle).

        The file records the embedder the router uses (kind, settings and a fingerprint: its
        vectors of fixed probe texts), which ``load`` checks. The header's SHA-256 detects
        damage, not tampering (anyone can recompute it); pass ``signing_key`` (str or bytes, a
        secret) to add an HMAC-SHA256 that ``load(path, signing_key=...)`` verifies.
        """
        self._check_is_fitted()
        # ``set_params`` after ``fit`` is checked at the next fit only: a bad value would be
        # written to a file that every ``load`` refuses (it checks the parameters).
        self._validate_params()
        state, arrays = self._get_state()
        common: dict[str, Any] = {
            "models_": list(self.models_),
            "costs_": None if self.costs_ is None else [float(c) for c in self.costs_],
            "quality_": [float(q) for q in self.quality_],
        }
        used = self._embedder_to_record()
        if used is not None:
            common[_EMBEDDER_STATE] = {
                "spec": embedder_spec(used), "fingerprint": embedder_fingerprint(used)
            }
        calibration = getattr(self, "calibration_win_matrices_", None)
        if calibration is not None:
            arrays = {**arrays, _CALIBRATION_ARRAY: np.asarray(calibration, dtype=np.float32)}
        self._save_artifacts(path)
        write_router_file(
            path, kind=self.kind, params=self._params_for_file(), state={**state, **common},
            arrays=arrays, signing_key=signing_key,
        )

    def _embedder_to_record(self) -> Embedder | None:
        """The embedder ``save`` records (spec and fingerprint); None for routers without one."""
        if "embedder" in self._param_names():
            return self._resolve_embedder()
        return None

    def _save_artifacts(self, path: str | Path) -> None:
        """Write what the router file needs beside it (before the file); nothing by default."""
        return None

    @classmethod
    def _params_from_file(cls, params: dict[str, Any]) -> dict[str, Any]:
        """``__init__`` arguments from a file's JSON params (inverse of ``_params_for_file``)."""
        return params

    def _use_learned_embedder(self, embedder: Embedder) -> None:
        """Take the embedder rebuilt for a ``learns_embedder`` router (before ``_set_state``)."""
        raise NotImplementedError(f"{type(self).__name__} does not learn its embedder")

    def _load_calibration_scores(self, matrices: np.ndarray | None) -> None:
        m = len(self.models_)
        self.calibration_win_matrices_ = None
        self._calibration_note = "its file holds none (saved without them)"
        if matrices is None:
            return
        scores = np.ascontiguousarray(matrices, dtype=np.float32)
        if scores.ndim != 3 or scores.shape[1:] != (m, m):
            raise ValueError(f"calibration win matrices of shape {scores.shape} for {m} models")
        if not np.all((scores >= 0) & (scores <= 1)):
            raise ValueError("calibration win matrices hold values outside [0, 1]")
        self.calibration_win_matrices_ = scores

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        embedder: Embedder | None = None,
        signing_key: str | bytes | None = None,
        allow_remote_embedder: bool = False,
    ) -> Self:
        """Read a router written by ``save``; raises RouterFileError if it cannot be trusted.

        Parameters
        ----------
        path : str or Path
        embedder : Embedder, default=None
            The embedder to use. None rebuilds the one the file records, but only from an
            allow-list of known local embedders (packaged MiniLM on torch or ONNX, its distilled
            static embeddings, hashing); a file naming anything else (another model, a device,
            a custom class) needs the embedder object here. Either way the embedder must
            reproduce the fingerprint recorded at save time, or RouterFileError is raised.
        signing_key : str or bytes, default=None
            Require a valid HMAC-SHA256 signature under this key (see ``save``).
        allow_remote_embedder : bool, default=False
            Allow rebuilding an ``openai`` embedder the file names (prompts are sent to the
            OpenAI API, billed to you; checking its fingerprint makes one API call).

        The embedder is loaded and run while loading (the fingerprint check), so the first
        decision pays no model loading; ``load_seconds_`` holds the time the whole load took.
        """
        started = time.perf_counter()
        if embedder is not None and not isinstance(embedder, Embedder):
            raise RouterConfigError(
                f"embedder must be a langroute Embedder, got {type(embedder).__name__}"
            )
        kind, params, state, arrays = read_router_file(path, signing_key=signing_key)
        target = _REGISTRY.get(kind)
        if target is None:
            raise RouterFileError(
                f"{path}: unknown router kind {kind!r}; known {sorted(_REGISTRY)}"
            )
        if cls is not BaseRouter and not issubclass(target, cls):
            raise RouterFileError(f"{path}: holds a {target.__name__}, not a {cls.__name__}")
        record = state.pop(_EMBEDDER_STATE, None)
        used: Embedder | None = None
        if "embedder" in target._param_names():
            used = _embedder_for_file(path, record, embedder, allow_remote_embedder)
            if params.get("embedder") is not None or embedder is not None:
                params["embedder"] = used
        elif target.learns_embedder:
            used = _embedder_for_file(path, record, embedder, allow_remote_embedder)
        elif embedder is not None:
            raise RouterConfigError(f"a {target.__name__} takes no embedder")
        try:
            router = target(**target._params_from_file(params))
            router._validate_params()
            if target.learns_embedder:
                assert used is not None
                router._use_learned_embedder(used)
            router.models_ = _models_from_file(path, state.pop("models_"))
            costs = state.pop("costs_")
            router.costs_ = None if costs is None else _numbers_from_file(path, "costs_", costs)
            router.quality_ = _numbers_from_file(path, "quality_", state.pop("quality_"))
            _check_per_model(path, router)
            router._load_calibration_scores(arrays.pop(_CALIBRATION_ARRAY, None))
            router._set_state(state, arrays)
            router._new_fit_version()
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, RouterFileError):
                raise
            raise RouterFileError(f"{path}: inconsistent {kind} router file ({exc})") from exc
        if used is not None:
            if params.get("embedder") is None and not target.learns_embedder:
                router._default_embedder = used  # the default it was trained with, kept
            # Loads and runs the model (the warm-up), then compares its probe vectors.
            probes = check_fingerprint(used, record["fingerprint"], source=str(path))
            _check_win_matrices(path, router, probes)
        router.load_seconds_ = time.perf_counter() - started
        return router  # type: ignore[return-value]


def _models_from_file(path: str | Path, models: Any) -> list[str]:
    """A file's ``models_``: a list of distinct non-empty names, as ``fit`` keeps them.

    Checked, not coerced: ``str()`` of each item would read a dict as its keys and a string
    as its letters, and route to models the file never named.
    """
    if not (isinstance(models, list) and all(isinstance(m, str) and m for m in models)
            and len(set(models)) == len(models)):
        raise RouterFileError(
            f"{path}: inconsistent router file: models_ must be a list of distinct non-empty "
            f"model names, got {models!r}"
        )
    return list(models)


def _numbers_from_file(path: str | Path, name: str, values: Any) -> np.ndarray:
    """A file's ``costs_`` or ``quality_`` as an array, if it is a list of numbers."""
    if not (isinstance(values, list)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise RouterFileError(
            f"{path}: inconsistent router file: {name} must be a list of numbers, got {values!r}"
        )
    return np.asarray(values, dtype=np.float64)


def _check_per_model(path: str | Path, router: BaseRouter) -> None:
    """A file's ``costs_`` and ``quality_`` must hold one value per model, in the range ``fit``
    gives: checked at load, as the checksum cannot tell an edited header from a saved one
    (anyone can recompute it).

    Costs are >= 0 and qualities in [0, 1]; NaN is allowed in both because ``fit`` gives it
    to a model whose costs were never known (or that played no battle). A little slack above
    1 for qualities: running means of scores of 1 may round just past it.
    """
    m = len(router.models_)
    for name, values in (("costs_", router.costs_), ("quality_", router.quality_)):
        if values is None:
            continue
        if values.shape != (m,):
            raise RouterFileError(
                f"{path}: inconsistent router file: {name} holds {values.size} value(s) of "
                f"shape {values.shape} for {m} models {router.models_}"
            )
        high, what = (np.inf, ">= 0") if name == "costs_" else (1.0 + 1e-9, "in [0, 1]")
        known = values[~np.isnan(values)]
        if not (np.all(np.isfinite(known)) and np.all(known >= 0.0) and np.all(known <= high)):
            raise RouterFileError(
                f"{path}: inconsistent router file: {name} must be finite and {what} "
                f"(NaN = unknown), got {values.tolist()}"
            )


def are_probabilities(win: np.ndarray) -> bool:
    """Whether every entry of ``win`` is a probability (up to float rounding; NaN is not)."""
    return bool(np.all((win >= -1e-6) & (win <= 1.0 + 1e-6)))  # NaN fails both comparisons


def _check_win_matrices(path: str | Path, router: BaseRouter, embeddings: np.ndarray) -> None:
    """The loaded router's win matrices of the probe texts must be probabilities.

    Learned arrays holding NaN (or values that overflow) pass the per-array checks and the
    checksum (anyone can recompute it), then give NaN win matrices that route silently
    wrong; ``fit`` never produces them.
    """
    try:
        win = router.win_matrices_from_embeddings(embeddings)
    except (ValueError, FloatingPointError) as exc:
        raise RouterFileError(f"{path}: inconsistent {router.kind} router file ({exc})") from exc
    if not are_probabilities(win):
        raise RouterFileError(
            f"{path}: inconsistent {router.kind} router file: its learned arrays give win "
            "probabilities that are NaN or outside [0, 1]"
        )


def _embedder_for_file(
    path: str | Path, record: Any, given: Embedder | None, allow_remote: bool
) -> Embedder:
    """The embedder a loaded router uses: ``given`` (if it matches the file) or rebuilt."""
    if not isinstance(record, dict) or not isinstance(record.get("spec"), dict):
        raise RouterFileError(
            f"{path}: the file does not record which embedder trained the router (written by "
            "an older langroute?); refit and save it again"
        )
    if "fingerprint" not in record:
        # The SHA-256 does not stop an edited header: check before the fingerprint is read.
        raise RouterFileError(
            f"{path}: the file's embedder record has no fingerprint, so the embedder cannot be "
            "checked; refit and save the router again"
        )
    spec = record["spec"]
    if given is None:
        return trusted_embedder(spec, source=str(path), allow_remote=allow_remote,
                                router_path=path)
    if given.kind != spec.get("kind"):
        raise RouterFileError(
            f"{path}: the router was trained with embedder {spec!r}, but a {given.kind!r} "
            f"embedder ({given!r}) was given"
        )
    return given


def load_router(
    path: str | Path,
    *,
    embedder: Embedder | None = None,
    signing_key: str | bytes | None = None,
    allow_remote_embedder: bool = False,
) -> BaseRouter:
    """Load any saved langroute router, whatever its class (see ``BaseRouter.load``)."""
    return BaseRouter.load(
        path, embedder=embedder, signing_key=signing_key,
        allow_remote_embedder=allow_remote_embedder,
    )
