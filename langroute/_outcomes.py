"""Recorded outcomes (prompt x model -> quality): what every router learns from.

Two on-disk forms are read:

* the **outcomes format** (a folder): ``prompts.jsonl`` (``id``, ``prompt``, optional ``task``),
  ``scores.csv`` (``id,<model>,...``, quality in [0, 1], empty cell = not measured), optional
  ``costs.csv`` (same shape, USD per call) and optional ``models.json`` (per-model prices);
* **pairwise battles** (RouteLLM / Chatbot Arena style JSONL): ``prompt``, ``model_a``, ``model_b``,
  ``winner`` in ``model_a`` | ``model_b`` | ``tie`` | ``tie (bothbad)``.

Both become win counts between models per unique prompt (``pairwise_counts``): the sufficient
statistic the Bradley-Terry routers aggregate.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._exceptions import OutcomesError

__all__ = ["Battles", "Outcomes", "load_battles", "load_outcomes", "pairwise_counts"]

_TIE_WINNERS = {"tie", "tie (bothbad)"}


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Quality (and optionally cost) of every model on every prompt.

    Parameters
    ----------
    ids : list of str
        Unique prompt ids.
    prompts : list of str
        Prompt texts, aligned with ``ids``.
    models : tuple of str
        Model names, the column order of ``scores`` and ``costs``.
    scores : ndarray of shape (n_prompts, n_models)
        Quality in [0, 1]; NaN where a model was not measured on a prompt.
    costs : ndarray of shape (n_prompts, n_models), default=None
        USD each call cost; NaN where unknown.
    tasks : list of str, default=None
        Benchmark or subset each prompt came from.
    prices : dict, default={}
        ``models.json`` content: per model ``input_usd_per_mtok``, ``output_usd_per_mtok``, ...
    """

    ids: list[str]
    prompts: list[str]
    models: tuple[str, ...]
    scores: np.ndarray
    costs: np.ndarray | None = None
    tasks: list[str] | None = None
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        n, m = len(self.ids), len(self.models)
        if len(self.prompts) != n:
            raise OutcomesError(f"{len(self.prompts)} prompts for {n} ids", path=self.source)
        if self.scores.shape != (n, m):
            raise OutcomesError(
                f"scores has shape {self.scores.shape}, expected ({n}, {m})", path=self.source
            )
        if self.costs is not None and self.costs.shape != (n, m):
            raise OutcomesError(
                f"costs has shape {self.costs.shape}, expected ({n}, {m})", path=self.source
            )
        if len(set(self.models)) != m:
            raise OutcomesError(f"duplicate model names in {list(self.models)}", path=self.source)
        if len(set(self.ids)) != n:
            raise OutcomesError("duplicate prompt ids", path=self.source)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: Sequence[int] | np.ndarray) -> Outcomes:
        """The same outcomes restricted to ``rows`` (indices or a boolean mask)."""
        idx = np.arange(len(self))[np.asarray(rows)]
        return Outcomes(
            ids=[self.ids[i] for i in idx],
            prompts=[self.prompts[i] for i in idx],
            models=self.models,
            scores=self.scores[idx],
            costs=None if self.costs is None else self.costs[idx],
            tasks=None if self.tasks is None else [self.tasks[i] for i in idx],
            prices=self.prices,
            source=self.source,
        )

    def select_models(self, models: Sequence[str]) -> Outcomes:
        """The same prompts with only ``models`` (in that order)."""
        unknown = [name for name in models if name not in self.models]
        if unknown:
            raise OutcomesError(f"unknown models {unknown}; known: {list(self.models)}")
        cols = [self.models.index(name) for name in models]
        return Outcomes(
            ids=list(self.ids),
            prompts=list(self.prompts),
            models=tuple(models),
            scores=self.scores[:, cols],
            costs=None if self.costs is None else self.costs[:, cols],
            tasks=self.tasks,
            prices={k: v for k, v in self.prices.items() if k in models},
            source=self.source,
        )

    def mean_costs(self) -> np.ndarray | None:
        """Average USD per call of each model (NaN-aware), or None without cost data."""
        if self.costs is None:
            return None
        return np.nanmean(self.costs, axis=0)

    def mean_scores(self) -> np.ndarray:
        """Average quality of each model (NaN-aware)."""
        return np.nanmean(self.scores, axis=0)


@dataclass(frozen=True, eq=False)
class Battles:
    """Pairwise comparisons: on ``prompts[prompt_index[k]]``, ``model_a[k]`` met ``model_b[k]``.

    ``result[k]`` is 1.0 if model a won, 0.0 if model b won, 0.5 for a tie.
    """

    prompts: list[str]
    models: tuple[str, ...]
    prompt_index: np.ndarray
    model_a: np.ndarray
    model_b: np.ndarray
    result: np.ndarray
    source: str | None = None

    def __len__(self) -> int:
        return int(self.prompt_index.shape[0])


def pairwise_counts(data: Outcomes | Battles) -> tuple[list[str], np.ndarray]:
    """Per unique prompt, the matrix of wins of row model over column model (ties count 0.5 each).

    Returns ``(prompts, counts)`` with ``counts`` of shape (n_prompts, n_models, n_models),
    float64. From scores, the higher score wins and equal scores tie; unmeasured (NaN) pairs
    contribute nothing.
    """
    if isinstance(data, Outcomes):
        s = data.scores
        a = s[:, :, None]
        b = s[:, None, :]
        measured = ~(np.isnan(a) | np.isnan(b))
        counts = np.where(measured, (a > b) + 0.5 * (a == b), 0.0)
        diag = np.arange(len(data.models))
        counts[:, diag, diag] = 0.0
        return list(data.prompts), counts.astype(np.float64)
    if isinstance(data, Battles):
        m = len(data.models)
        counts = np.zeros((len(data.prompts), m, m))
        np.add.at(counts, (data.prompt_index, data.model_a, data.model_b), data.result)
        np.add.at(counts, (data.prompt_index, data.model_b, data.model_a), 1.0 - data.result)
        return list(data.prompts), counts
    raise TypeError(f"expected Outcomes or Battles, got {type(data).__name__}")


def load_outcomes(path: str | Path) -> Outcomes:
    """Read an outcomes folder (see module docstring); malformed input raises OutcomesError."""
    root = Path(path)
    if not root.is_dir():
        raise OutcomesError("not a folder of outcomes (prompts.jsonl, scores.csv)", path=root)
    ids, prompts, tasks = _read_prompts(root / "prompts.jsonl")
    known = set(ids)
    models, score_rows = _read_matrix(root / "scores.csv", known, check_unit=True)
    scores = _align(score_rows, ids, len(models), root / "scores.csv")
    costs = None
    cost_path = root / "costs.csv"
    if cost_path.exists():
        cost_models, cost_rows = _read_matrix(cost_path, known, check_unit=False)
        if set(cost_models) != set(models):
            raise OutcomesError(
                f"models {sorted(cost_models)} differ from scores.csv's {sorted(models)}",
                path=cost_path,
                line=1,
            )
        order = [cost_models.index(name) for name in models]
        costs = _align(cost_rows, ids, len(models), cost_path)[:, order]
    prices: dict[str, dict[str, Any]] = {}
    models_path = root / "models.json"
    if models_path.exists():
        try:
            prices = json.loads(models_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise OutcomesError(f"invalid JSON: {exc.msg}", path=models_path, line=exc.lineno) from exc
        if not isinstance(prices, dict):
            raise OutcomesError("expected an object of model name -> prices", path=models_path)
        unknown = sorted(set(prices) - set(models))
        if unknown:
            raise OutcomesError(f"models {unknown} are not columns of scores.csv", path=models_path)
    return Outcomes(
        ids=ids,
        prompts=prompts,
        models=tuple(models),
        scores=scores,
        costs=costs,
        tasks=tasks if any(t is not None for t in tasks) else None,
        prices=prices,
        source=str(root),
    )


def _read_prompts(path: Path) -> tuple[list[str], list[str], list[Any]]:
    if not path.exists():
        raise OutcomesError("missing prompts.jsonl", path=path)
    ids: list[str] = []
    prompts: list[str] = []
    tasks: list[Any] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise OutcomesError(f"invalid JSON: {exc.msg}", path=path, line=lineno) from exc
            if not isinstance(obj, dict):
                raise OutcomesError("expected a JSON object", path=path, line=lineno)
            pid = obj.get("id")
            if pid is None or (isinstance(pid, str) and not pid):
                raise OutcomesError("missing id", path=path, line=lineno)
            pid = str(pid)
            if pid in seen:
                raise OutcomesError(
                    f"duplicate id {pid!r} (first on line {seen[pid]})", path=path, line=lineno
                )
            prompt = obj.get("prompt")
            if not isinstance(prompt, str):
                raise OutcomesError(f"id {pid!r}: missing or non-text prompt", path=path, line=lineno)
            seen[pid] = lineno
            ids.append(pid)
            prompts.append(prompt)
            tasks.append(obj.get("task"))
    if not ids:
        raise OutcomesError("no prompts", path=path)
    return ids, prompts, tasks


def _read_matrix(
    path: Path, known_ids: set[str], *, check_unit: bool
) -> tuple[list[str], dict[str, tuple[int, list[float]]]]:
    if not path.exists():
        raise OutcomesError(f"missing {path.name}", path=path)
    rows: dict[str, tuple[int, list[float]]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or header[0] != "id" or len(header) < 2:
            raise OutcomesError("header must be 'id,<model>,<model>,...'", path=path, line=1)
        models = [name.strip() for name in header[1:]]
        if any(not name for name in models):
            raise OutcomesError("empty model name in header", path=path, line=1)
        if len(set(models)) != len(models):
            raise OutcomesError(f"duplicate model names in header {models}", path=path, line=1)
        for cells in reader:
            lineno = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise OutcomesError(
                    f"{len(cells)} cells, header has {len(header)}", path=path, line=lineno
                )
            pid = cells[0].strip()
            if not pid:
                raise OutcomesError("missing id", path=path, line=lineno)
            if pid not in known_ids:
                raise OutcomesError(f"id {pid!r} is not in prompts.jsonl", path=path, line=lineno)
            if pid in rows:
                raise OutcomesError(
                    f"duplicate id {pid!r} (first on line {rows[pid][0]})", path=path, line=lineno
                )
            values: list[float] = []
            for model, cell in zip(models, cells[1:], strict=True):
                cell = cell.strip()
                if cell == "":
                    values.append(math.nan)
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    raise OutcomesError(
                        f"{model}: {cell!r} is not a number", path=path, line=lineno
                    ) from None
                if not math.isfinite(value):
                    raise OutcomesError(f"{model}: {cell!r} is not finite", path=path, line=lineno)
                if check_unit and not 0.0 <= value <= 1.0:
                    raise OutcomesError(
                        f"{model}: score {value} is outside [0, 1]", path=path, line=lineno
                    )
                if not check_unit and value < 0.0:
                    raise OutcomesError(f"{model}: negative cost {value}", path=path, line=lineno)
                values.append(value)
            rows[pid] = (lineno, values)
    return models, rows


def _align(
    rows: dict[str, tuple[int, list[float]]], ids: list[str], n_models: int, path: Path
) -> np.ndarray:
    missing = [pid for pid in ids if pid not in rows]
    if missing:
        raise OutcomesError(
            f"{len(missing)} prompt ids have no row, first {missing[0]!r}", path=path
        )
    out = np.empty((len(ids), n_models), dtype=np.float64)
    for i, pid in enumerate(ids):
        out[i] = rows[pid][1]
    return out


def load_battles(path: str | Path, *, models: Sequence[str] | None = None) -> Battles:
    """Read RouteLLM-style pairwise battles (JSONL: prompt, model_a, model_b, winner).

    ``models`` fixes the model order (and rejects battles naming others); by default the models
    are taken in order of first appearance.
    """
    file = Path(path)
    if not file.is_file():
        raise OutcomesError("no such battles file", path=file)
    order: dict[str, int] = {name: i for i, name in enumerate(models or [])}
    fixed = models is not None
    prompt_ids: dict[str, int] = {}
    pi: list[int] = []
    ma: list[int] = []
    mb: list[int] = []
    res: list[float] = []
    with file.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise OutcomesError(f"invalid JSON: {exc.msg}", path=file, line=lineno) from exc
            if not isinstance(obj, dict):
                raise OutcomesError("expected a JSON object", path=file, line=lineno)
            for key in ("prompt", "model_a", "model_b", "winner"):
                if not isinstance(obj.get(key), str):
                    raise OutcomesError(f"missing or non-text {key!r}", path=file, line=lineno)
            a, b, winner = obj["model_a"], obj["model_b"], obj["winner"]
            if a == b:
                raise OutcomesError(f"model_a and model_b are both {a!r}", path=file, line=lineno)
            for name in (a, b):
                if name not in order:
                    if fixed:
                        raise OutcomesError(
                            f"unknown model {name!r}; expected one of {list(order)}",
                            path=file,
                            line=lineno,
                        )
                    order[name] = len(order)
            if winner == "model_a":
                outcome = 1.0
            elif winner == "model_b":
                outcome = 0.0
            elif winner in _TIE_WINNERS:
                outcome = 0.5
            else:
                raise OutcomesError(
                    f"winner {winner!r} is not model_a, model_b, tie or 'tie (bothbad)'",
                    path=file,
                    line=lineno,
                )
            pi.append(prompt_ids.setdefault(obj["prompt"], len(prompt_ids)))
            ma.append(order[a])
            mb.append(order[b])
            res.append(outcome)
    if not pi:
        raise OutcomesError("no battles", path=file)
    return Battles(
        prompts=list(prompt_ids),
        models=tuple(order),
        prompt_index=np.asarray(pi, dtype=np.int64),
        model_a=np.asarray(ma, dtype=np.int64),
        model_b=np.asarray(mb, dtype=np.int64),
        result=np.asarray(res, dtype=np.float64),
        source=str(file),
    )
