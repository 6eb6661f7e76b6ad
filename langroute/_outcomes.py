"""Recorded outcomes (prompt x model -> quality): what every router learns from.

Two on-disk forms are read (both specified in ``docs/outcomes-format.md``):

* the **outcomes format** (a folder): ``prompts.jsonl`` (``id``, ``prompt``, optional ``task``),
  ``scores.csv`` (``id,<model>,...``, quality in [0, 1], empty cell = not measured), optional
  ``costs.csv`` (same shape, USD per call), optional ``models.json`` (per-model prices) and
  optional ``answers.csv`` / ``reference.csv`` (each model's normalised final answer and the
  reference answer: the offline signal cascades are evaluated with);
* **pairwise battles** (RouteLLM / Chatbot Arena style JSONL): ``prompt``, ``model_a``, ``model_b``,
  ``winner`` in ``model_a`` | ``model_b`` | ``tie`` | ``tie (bothbad)``.

Both become win counts between models (``pairwise_counts``): the sufficient statistic the
Bradley-Terry routers aggregate. Every malformed input raises ``OutcomesError`` naming the file and
line, because a silently skipped row would bias every router trained on it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
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
_PRICE_FIELDS = ("input_usd_per_mtok", "output_usd_per_mtok")
#: The datasets' token estimate: one token per four characters, rounded up.
CHARS_PER_TOKEN = 4


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
        USD each call cost (>= 0); NaN where unknown.
    tasks : list of str, default=None
        Benchmark or subset each prompt came from.
    prices : dict, default={}
        ``models.json`` content: per model ``input_usd_per_mtok``, ``output_usd_per_mtok``, ...
    source : str, default=None
        Where the outcomes were read from (used in error messages).
    answers : ndarray of str, shape (n_prompts, n_models), default=None
        Each model's normalised final answer ("" = no gradable answer); two answers agree when
        they are equal and non-empty (``answers.csv``).
    reference : ndarray of str, shape (n_prompts,), default=None
        The normalised reference answer of each prompt (``reference.csv``).
    """

    ids: list[str]
    prompts: list[str]
    models: tuple[str, ...]
    scores: np.ndarray
    costs: np.ndarray | None = None
    tasks: list[str] | None = None
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str | None = None
    answers: np.ndarray | None = None
    reference: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("ids", "prompts", "models", "tasks"):
            if isinstance(getattr(self, name), str):
                # tuple("ab") would be two one-letter names, silently
                raise TypeError(f"{name} must be a sequence of str, not a single str")
        # Coerce once so every consumer can rely on float64 arrays and a tuple of names.
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float64))
        if self.costs is not None:
            object.__setattr__(self, "costs", np.asarray(self.costs, dtype=np.float64))
        n, m = len(self.ids), len(self.models)
        if len(self.prompts) != n:
            raise OutcomesError(f"{len(self.prompts)} prompts for {n} ids", path=self.source)
        if self.tasks is not None and len(self.tasks) != n:
            raise OutcomesError(f"{len(self.tasks)} tasks for {n} ids", path=self.source)
        if self.scores.shape != (n, m):
            raise OutcomesError(
                f"scores has shape {self.scores.shape}, expected ({n}, {m})", path=self.source
            )
        if self.costs is not None and self.costs.shape != (n, m):
            raise OutcomesError(
                f"costs has shape {self.costs.shape}, expected ({n}, {m})", path=self.source
            )
        for name, values, shape in (("answers", self.answers, (n, m)),
                                    ("reference", self.reference, (n,))):
            if values is None:
                continue
            arr = np.asarray(values, dtype=object)
            if arr.shape != shape:
                raise OutcomesError(f"{name} has shape {arr.shape}, expected {shape}",
                                    path=self.source)
            if not all(isinstance(v, str) for v in arr.ravel()):
                raise OutcomesError(f"{name} must hold str ('' = no gradable answer)",
                                    path=self.source)
            object.__setattr__(self, name, arr.astype(str))
        if any(not isinstance(name, str) or not name for name in self.models):
            raise OutcomesError(f"model names must be non-empty str, got {list(self.models)}")
        if len(set(self.models)) != m:
            raise OutcomesError(f"duplicate model names in {list(self.models)}", path=self.source)
        if len(set(self.ids)) != n:
            raise OutcomesError("duplicate prompt ids", path=self.source)
        measured = self.scores[~np.isnan(self.scores)]
        if measured.size and not (np.all(np.isfinite(measured)) and measured.min() >= 0.0
                                  and measured.max() <= 1.0):
            raise OutcomesError("scores must lie in [0, 1] (NaN = not measured)", path=self.source)
        if self.costs is not None:
            known = self.costs[~np.isnan(self.costs)]
            if known.size and not (np.all(np.isfinite(known)) and known.min() >= 0.0):
                raise OutcomesError(
                    "costs must be finite and >= 0 (NaN = unknown)", path=self.source
                )

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: Sequence[int] | np.ndarray | slice) -> Outcomes:
        """The same outcomes restricted to ``rows`` (indices, a boolean mask or a slice)."""
        if isinstance(rows, slice):
            idx = np.arange(len(self))[rows]
        else:
            picked = np.asarray(rows)
            if picked.size == 0:
                picked = picked.astype(np.int64)  # np.asarray([]) is float: no rows, not an error
            if picked.ndim != 1 or not (picked.dtype == bool
                                        or np.issubdtype(picked.dtype, np.integer)):
                raise TypeError(
                    "subset() takes row indices (ints), a boolean mask or a slice, got an "
                    f"array of {picked.dtype} with shape {picked.shape}"
                )
            idx = np.arange(len(self))[picked]
        return dataclasses.replace(
            self,
            ids=[self.ids[i] for i in idx],
            prompts=[self.prompts[i] for i in idx],
            scores=self.scores[idx],
            costs=None if self.costs is None else self.costs[idx],
            tasks=None if self.tasks is None else [self.tasks[i] for i in idx],
            answers=None if self.answers is None else self.answers[idx],
            reference=None if self.reference is None else self.reference[idx],
        )

    def select_models(self, models: Sequence[str]) -> Outcomes:
        """The same prompts with only ``models`` (in that order)."""
        if isinstance(models, str):
            raise TypeError("select_models() takes a sequence of model names, not a single str")
        unknown = [name for name in models if name not in self.models]
        if unknown:
            raise OutcomesError(f"unknown models {unknown}; known: {list(self.models)}")
        cols = [self.models.index(name) for name in models]
        return dataclasses.replace(
            self,
            ids=list(self.ids),
            prompts=list(self.prompts),
            models=tuple(models),
            scores=self.scores[:, cols],
            costs=None if self.costs is None else self.costs[:, cols],
            tasks=None if self.tasks is None else list(self.tasks),
            prices={k: v for k, v in self.prices.items() if k in models},
            answers=None if self.answers is None else self.answers[:, cols],
            reference=None if self.reference is None else self.reference.copy(),
        )

    def with_estimated_costs(self, output_tokens: float | Sequence[float] | np.ndarray) -> Outcomes:
        """A copy whose ``costs`` are estimated from ``prices`` and the prompt lengths.

        Cost of a call = ceil(len(prompt) / 4) input tokens x ``input_usd_per_mtok`` +
        ``output_tokens`` x ``output_usd_per_mtok``, divided by one million (the datasets'
        estimate). The answers' lengths are not part of the format, so the caller states the
        expected output length: one number, or one per prompt (shape (n,)) or per call (n, M).
        """
        missing = [
            name for name in self.models
            if not all(isinstance(self.prices.get(name, {}).get(f), (int, float))
                       for f in _PRICE_FIELDS)
        ]
        if missing:
            raise OutcomesError(
                f"models {missing} have no {' / '.join(_PRICE_FIELDS)} in models.json; "
                "cannot estimate their costs",
                path=self.source,
            )
        out_tokens = np.asarray(output_tokens, dtype=np.float64)
        if out_tokens.ndim == 1:
            out_tokens = out_tokens[:, None]
        n, m = len(self), len(self.models)
        try:
            out_tokens = np.broadcast_to(out_tokens, (n, m))
        except ValueError:
            raise OutcomesError(
                f"output_tokens must be a number, shape ({n},) or ({n}, {m}); "
                f"got shape {np.shape(output_tokens)}"
            ) from None
        if not (np.all(np.isfinite(out_tokens)) and np.all(out_tokens >= 0)):
            # A LangrouteError (and still a ValueError), so the CLI reports it cleanly.
            got = f", got {output_tokens!r}" if np.ndim(output_tokens) == 0 else ""
            raise OutcomesError(f"output_tokens must be finite and >= 0{got}")
        in_price = np.array([self.prices[k]["input_usd_per_mtok"] for k in self.models], float)
        out_price = np.array([self.prices[k]["output_usd_per_mtok"] for k in self.models], float)
        in_tokens = np.ceil(np.array([len(p) for p in self.prompts], float) / CHARS_PER_TOKEN)
        costs = (in_tokens[:, None] * in_price + out_tokens * out_price) / 1e6
        return dataclasses.replace(self, costs=costs)

    def mean_costs(self) -> np.ndarray | None:
        """Average USD per call of each model (NaN-aware; NaN if never known), or None."""
        return None if self.costs is None else _nanmean_columns(self.costs)

    def mean_scores(self) -> np.ndarray:
        """Average quality of each model (NaN-aware; NaN if never measured)."""
        return _nanmean_columns(self.scores)


def _nanmean_columns(values: np.ndarray) -> np.ndarray:
    """Column means ignoring NaN, without numpy's empty-slice warning."""
    known = ~np.isnan(values)
    count = known.sum(axis=0)
    total = np.where(known, values, 0.0).sum(axis=0)
    return np.divide(total, count, out=np.full(values.shape[1], np.nan), where=count > 0)


@dataclass(frozen=True, eq=False)
class Battles:
    """Pairwise comparisons: on ``prompts[prompt_index[k]]``, ``model_a[k]`` met ``model_b[k]``.

    ``result[k]`` is model a's share of the win: 1.0 if model a won, 0.0 if model b won, 0.5
    for a tie (feedback imputed from scores gives shares in between). Malformed battles (index
    out of range, a model against itself, a result outside [0, 1]) raise ``OutcomesError``.
    """

    prompts: list[str]
    models: tuple[str, ...]
    prompt_index: np.ndarray
    model_a: np.ndarray
    model_b: np.ndarray
    result: np.ndarray
    source: str | None = None

    def __post_init__(self) -> None:
        # Routers sum these arrays into win counts unchecked: a result of 3 or an x-vs-x battle
        # would silently become impossible counts, so every constructor gets load_battles' rules.
        object.__setattr__(self, "models", tuple(self.models))
        m = len(self.models)
        if any(not isinstance(name, str) or not name for name in self.models):
            raise OutcomesError(f"model names must be non-empty str, got {list(self.models)}",
                                path=self.source)
        if len(set(self.models)) != m:
            raise OutcomesError(f"duplicate model names in {list(self.models)}", path=self.source)
        n: int | None = None
        for name in ("prompt_index", "model_a", "model_b"):
            arr = np.asarray(getattr(self, name))
            if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
                raise OutcomesError(f"{name} must be a 1-D array of integer indices, got "
                                    f"shape {arr.shape} of {arr.dtype}", path=self.source)
            object.__setattr__(self, name, arr.astype(np.int64))
            n = arr.shape[0] if n is None else n
            if arr.shape[0] != n:
                raise OutcomesError(f"{name} has {arr.shape[0]} entries for {n} battles",
                                    path=self.source)
        result = np.asarray(self.result, dtype=np.float64)
        if result.shape != (n,):
            raise OutcomesError(f"result has shape {result.shape}, expected ({n},)",
                                path=self.source)
        object.__setattr__(self, "result", result)
        checks = (
            (self.prompt_index, (self.prompt_index < 0) | (self.prompt_index >= len(self.prompts)),
             f"prompt_index must lie in [0, {len(self.prompts)})"),
            (self.model_a, (self.model_a < 0) | (self.model_a >= m),
             f"model_a must lie in [0, {m})"),
            (self.model_b, (self.model_b < 0) | (self.model_b >= m),
             f"model_b must lie in [0, {m})"),
            (self.result, ~((result >= 0.0) & (result <= 1.0)),
             "result must lie in [0, 1] (1 = model a won, 0 = model b won, 0.5 = tie)"),
        )
        for values, bad, message in checks:
            if bad.any():
                k = int(np.argmax(bad))
                raise OutcomesError(f"battle {k}: {message}, got {values[k].item()!r}",
                                    path=self.source)
        same = self.model_a == self.model_b
        if same.any():
            k = int(np.argmax(same))
            raise OutcomesError(
                f"battle {k}: model_a and model_b are both {self.models[self.model_a[k]]!r}",
                path=self.source)

    def __len__(self) -> int:
        return int(self.prompt_index.shape[0])


def pairwise_counts(data: Outcomes | Battles) -> tuple[list[str], np.ndarray]:
    """Matrices of wins of row model over column model (ties count 0.5 to each side).

    Returns ``(prompts, counts)`` with ``counts`` of shape (n_prompts, n_models, n_models),
    float64. For ``Outcomes`` there is one matrix per row (aligned with ``data.prompts``); the
    higher score wins, equal scores tie, and unmeasured (NaN) pairs contribute nothing. For
    ``Battles`` there is one matrix per unique prompt text, summing all its battles.
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


# -- reading ---------------------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    """The file's text (UTF-8, optional BOM); undecodable bytes raise with their line."""
    if not path.is_file():
        raise OutcomesError(f"missing {path.name}", path=path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise OutcomesError(f"not UTF-8 text ({exc.reason})", path=path, line=line) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _parse_json(text: str, path: Path, line: int | None) -> Any:
    """``json.loads`` that refuses NaN/Infinity and reports errors with file and line."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        where = line if line is not None else exc.lineno
        raise OutcomesError(f"invalid JSON: {exc.msg}", path=path, line=where) from None
    except ValueError as exc:
        raise OutcomesError(f"invalid JSON: {exc}", path=path, line=line) from None
    except RecursionError:
        raise OutcomesError("invalid JSON: nested too deeply to read", path=path,
                            line=line) from None


def _jsonl_objects(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSONL file."""
    out = []
    # Split on "\n" only: str.splitlines() would also break inside prompts at U+2028, U+0085...
    for lineno, raw in enumerate(_read_text(path).split("\n"), start=1):
        if not raw.strip():
            continue
        obj = _parse_json(raw, path, lineno)
        if not isinstance(obj, dict):
            raise OutcomesError("expected a JSON object", path=path, line=lineno)
        out.append((lineno, obj))
    return out


def load_outcomes(path: str | Path) -> Outcomes:
    """Read an outcomes folder (see ``docs/outcomes-format.md``).

    ``costs`` is None when the folder has no ``costs.csv``; ``Outcomes.with_estimated_costs``
    then derives estimates from ``models.json`` prices. Malformed input raises ``OutcomesError``.
    """
    root = Path(path)
    if not root.is_dir():
        raise OutcomesError("not a folder of outcomes (prompts.jsonl, scores.csv)", path=root)
    prompts_path = root / "prompts.jsonl"
    ids, prompts, tasks, id_lines = _read_prompts(prompts_path)
    known = set(ids)
    scores_path = root / "scores.csv"
    models, score_rows = _read_matrix(scores_path, known, check_unit=True)
    scores = _align(score_rows, ids, id_lines, len(models), scores_path, prompts_path)
    for j, name in enumerate(models):
        if np.isnan(scores[:, j]).all():
            raise OutcomesError(f"model {name!r} has no measured score", path=scores_path, line=1)
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
        costs = _align(cost_rows, ids, id_lines, len(models), cost_path, prompts_path)[:, order]
    models_path = root / "models.json"
    prices = _read_prices(models_path, models) if models_path.exists() else {}
    answers = reference = None
    answers_path = root / "answers.csv"
    if answers_path.exists():
        answer_models, answer_rows = _read_matrix(answers_path, known, check_unit=False,
                                                  cell=_answer_cell)
        if set(answer_models) != set(models):
            raise OutcomesError(
                f"models {sorted(answer_models)} differ from scores.csv's {sorted(models)}",
                path=answers_path, line=1,
            )
        order = [answer_models.index(name) for name in models]
        answers = _align(answer_rows, ids, id_lines, len(models), answers_path, prompts_path,
                         dtype=object)[:, order]
    reference_path = root / "reference.csv"
    if reference_path.exists():
        header, reference_rows = _read_matrix(reference_path, known, check_unit=False,
                                              cell=_answer_cell)
        if header != ["answer"]:
            raise OutcomesError("header must be 'id,answer'", path=reference_path, line=1)
        reference = _align(reference_rows, ids, id_lines, 1, reference_path, prompts_path,
                           dtype=object)[:, 0]
    return Outcomes(
        ids=ids,
        prompts=prompts,
        models=tuple(models),
        scores=scores,
        costs=costs,
        tasks=tasks if any(t is not None for t in tasks) else None,
        prices=prices,
        source=str(root),
        answers=answers,
        reference=reference,
    )


def _read_prompts(path: Path) -> tuple[list[str], list[str], list[Any], dict[str, int]]:
    ids: list[str] = []
    prompts: list[str] = []
    tasks: list[Any] = []
    seen: dict[str, int] = {}
    for lineno, obj in _jsonl_objects(path):
        pid = obj.get("id")
        if isinstance(pid, bool) or not isinstance(pid, (str, int)) or pid == "":
            problem = "missing id" if pid in (None, "") else f"id must be a string, got {pid!r}"
            raise OutcomesError(problem, path=path, line=lineno)
        pid = str(pid)
        if pid in seen:
            raise OutcomesError(
                f"duplicate id {pid!r} (first on line {seen[pid]})", path=path, line=lineno
            )
        prompt = obj.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise OutcomesError(f"id {pid!r}: missing, empty or non-text prompt", path=path,
                                line=lineno)
        task = obj.get("task")
        if task is not None and not isinstance(task, str):
            raise OutcomesError(f"id {pid!r}: task must be a string, got {task!r}", path=path,
                                line=lineno)
        seen[pid] = lineno
        ids.append(pid)
        prompts.append(prompt)
        tasks.append(task)
    if not ids:
        raise OutcomesError("no prompts (empty file)", path=path)
    return ids, prompts, tasks, seen


def _read_matrix(
    path: Path, known_ids: set[str], *, check_unit: bool, cell: Any = None
) -> tuple[list[str], dict[str, tuple[int, list[Any]]]]:
    """Header models and ``{id: (line, cells)}``; ``cell`` parses one cell (default: a
    number, see ``_cell``)."""
    parse = _cell if cell is None else cell
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    rows: dict[str, tuple[int, list[Any]]] = {}
    try:
        header = next(reader, None)
        if header is None:
            raise OutcomesError("empty file; expected header 'id,<model>,...'", path=path, line=1)
        header = [name.strip() for name in header]
        if len(header) < 2 or header[0] != "id":
            raise OutcomesError("header must be 'id,<model>,<model>,...'", path=path, line=1)
        models = header[1:]
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
            rows[pid] = (lineno, [parse(m, c, path, lineno, check_unit)
                                  for m, c in zip(models, cells[1:], strict=True)])
    except csv.Error as exc:
        raise OutcomesError(f"malformed CSV: {exc}", path=path, line=reader.line_num) from None
    return models, rows


def _cell(model: str, cell: str, path: Path, lineno: int, check_unit: bool) -> float:
    cell = cell.strip()
    if cell == "":
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        raise OutcomesError(f"{model}: {cell!r} is not a number", path=path, line=lineno) from None
    if not math.isfinite(value):
        raise OutcomesError(
            f"{model}: {cell!r} is not finite (leave the cell empty for 'not measured')",
            path=path,
            line=lineno,
        )
    if check_unit and not 0.0 <= value <= 1.0:
        raise OutcomesError(f"{model}: score {value} is outside [0, 1]", path=path, line=lineno)
    if not check_unit and value < 0.0:
        raise OutcomesError(f"{model}: negative cost {value}", path=path, line=lineno)
    return value


def _answer_cell(model: str, cell: str, path: Path, lineno: int, check_unit: bool) -> str:
    """An answer cell, kept exactly (answers are already normalised; "" = no answer)."""
    return cell


def _align(
    rows: dict[str, tuple[int, list[Any]]],
    ids: list[str],
    id_lines: dict[str, int],
    n_models: int,
    path: Path,
    prompts_path: Path,
    dtype: Any = np.float64,
) -> np.ndarray:
    for pid in ids:
        if pid not in rows:
            raise OutcomesError(
                f"id {pid!r} has no row in {path.name}", path=prompts_path, line=id_lines[pid]
            )
    out = np.empty((len(ids), n_models), dtype=dtype)
    for i, pid in enumerate(ids):
        out[i] = rows[pid][1]
    return out


def _read_prices(path: Path, models: list[str]) -> dict[str, dict[str, Any]]:
    text = _read_text(path)
    prices = _parse_json(text, path, None)
    if not isinstance(prices, dict):
        raise OutcomesError("expected an object of model name -> prices", path=path, line=1)

    def line_of(name: str) -> int | None:
        at = text.find(json.dumps(name))
        return None if at < 0 else text.count("\n", 0, at) + 1

    for name, entry in prices.items():
        if name not in models:
            raise OutcomesError(
                f"model {name!r} is not a column of scores.csv", path=path, line=line_of(name)
            )
        if not isinstance(entry, dict):
            raise OutcomesError(f"{name}: expected an object of prices", path=path,
                                line=line_of(name))
        for key in _PRICE_FIELDS:
            value = entry.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise OutcomesError(
                    f"{name}: {key} must be a number >= 0, got {value!r}", path=path,
                    line=line_of(name),
                )
    return prices


def load_battles(path: str | Path, *, models: Sequence[str] | None = None) -> Battles:
    """Read RouteLLM-style pairwise battles (JSONL: prompt, model_a, model_b, winner).

    ``models`` fixes the model order (and rejects battles naming others); by default the models
    are taken in order of first appearance. Battles on the same prompt text are grouped.
    """
    file = Path(path)
    if not file.is_file():
        raise OutcomesError("no such battles file", path=file)
    if isinstance(models, str):
        raise TypeError("models must be a sequence of model names, not a single str")
    order: dict[str, int] = {name: i for i, name in enumerate(models or [])}
    if models is not None and len(order) != len(models):
        raise OutcomesError(f"duplicate names in models {list(models)}", path=file)
    fixed = models is not None
    prompt_ids: dict[str, int] = {}
    pi: list[int] = []
    ma: list[int] = []
    mb: list[int] = []
    res: list[float] = []
    for lineno, obj in _jsonl_objects(file):
        for key in ("prompt", "model_a", "model_b", "winner"):
            if not isinstance(obj.get(key), str) or not obj[key]:
                raise OutcomesError(f"missing, empty or non-text {key!r}", path=file, line=lineno)
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
        raise OutcomesError("no battles (empty file)", path=file)
    return Battles(
        prompts=list(prompt_ids),
        models=tuple(order),
        prompt_index=np.asarray(pi, dtype=np.int64),
        model_a=np.asarray(ma, dtype=np.int64),
        model_b=np.asarray(mb, dtype=np.int64),
        result=np.asarray(res, dtype=np.float64),
        source=str(file),
    )


def first_gap(data: Outcomes, names: Sequence[str]) -> tuple[str, int, str] | None:
    """The first of the arrays ``names`` ("scores", "costs") in which some prompt lacks a model's
    value: (that name, how many prompts lack one, the first such prompt's id); else None."""
    for name in names:
        missing = np.isnan(getattr(data, name)).any(axis=1)
        if missing.any():
            return name, int(missing.sum()), data.ids[int(np.argmax(missing))]
    return None
