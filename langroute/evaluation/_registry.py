"""Router names for the CLI and ``evaluate``: ``"sw"`` -> ``langroute.routers.SWRouter``, etc.

Routers are looked up by class name in ``langroute.routers`` only when asked for, so a router
module that is missing (or fails to import) breaks only the name that needs it, with an error
saying so. ``register_router`` lets another router (or a user's own) join under a short name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .._exceptions import RouterConfigError
from ..embeddings import Embedder
from ..routers import BaseRouter

__all__ = [
    "DEFAULT_ROUTER", "available_router_names", "make_router", "register_router", "router_names",
]

#: The router ``langroute eval`` and ``langroute train`` use without ``--router``; chosen by the
#: nested cross-validated sweep (``benchmarks/bench_eval_sweep.py``, README "Choosing the
#: default router").
DEFAULT_ROUTER = "stacked"

RouterFactory = Callable[[Embedder | None], BaseRouter]

#: short name -> (module, class name); the class is built with ``embedder=``.
_BUILTIN: dict[str, tuple[str, str]] = {
    "sw": ("langroute.routers", "SWRouter"),
    "knn": ("langroute.routers", "KNNRouter"),
    "cluster": ("langroute.routers", "ClusterRouter"),
    "mf": ("langroute.routers", "MFRouter"),
    "irt": ("langroute.routers", "IRTRouter"),
    "avengers": ("langroute.routers", "ClusterRouter"),
    "stacked": ("langroute.routers", "StackedRouter"),
    "contrastive": ("langroute.routers", "ContrastiveRouter"),
}
#: Fixed parameters of built-in names that preset a router class (applied after construction).
#: Routers with random initialisation get ``random_state=0``, so an evaluation is reproducible
#: from its command (``name:random_state=...`` overrides it).
_PRESETS: dict[str, dict[str, object]] = {
    "cluster": {"random_state": 0},
    "mf": {"random_state": 0},
    "irt": {"random_state": 0},
    "avengers": {"per_cluster": "quality", "n_clusters": 32, "n_probe": 3, "random_state": 0},
}
_CUSTOM: dict[str, RouterFactory] = {}


def router_names() -> list[str]:
    """Every name ``make_router`` accepts (built-in first, then registered)."""
    return list(_BUILTIN) + [name for name in _CUSTOM if name not in _BUILTIN]


def register_router(name: str, factory: RouterFactory) -> None:
    """Make ``make_router(name, embedder)`` call ``factory(embedder)``.

    ``factory`` may be a router class taking ``embedder`` as its first argument.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise RouterConfigError(f"router names must be identifiers, got {name!r}")
    if not callable(factory):
        raise RouterConfigError(f"factory for {name!r} must be callable")
    _CUSTOM[name] = factory


def make_router(name: str, embedder: Embedder | None = None) -> BaseRouter:
    """A new, unfitted router of the given short name, using ``embedder``."""
    if name in _CUSTOM:
        router = _CUSTOM[name](embedder)
    elif name in _BUILTIN:
        module_name, class_name = _BUILTIN[name]
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name, None)
        if cls is None:
            raise RouterConfigError(
                f"router {name!r} needs {module_name}.{class_name}, which this installation "
                f"of langroute does not provide; available now: {available_router_names()}"
            )
        # A router that learns its own encoder (contrastive) takes no embedder.
        router = cls(embedder=embedder) if "embedder" in cls._param_names() else cls()
        router.set_params(**_PRESETS.get(name, {}))
    else:
        raise RouterConfigError(f"unknown router {name!r}; valid names: {router_names()}")
    if not isinstance(router, BaseRouter):
        raise RouterConfigError(
            f"router {name!r} built a {type(router).__name__}, not a BaseRouter"
        )
    return router


def available_router_names() -> list[str]:
    """The names whose router classes can be imported right now."""
    module_cache: dict[str, object] = {}
    names = []
    for name, (module_name, class_name) in _BUILTIN.items():
        if module_name not in module_cache:
            module_cache[module_name] = importlib.import_module(module_name)
        if hasattr(module_cache[module_name], class_name):
            names.append(name)
    return names + [name for name in _CUSTOM if name not in _BUILTIN]
