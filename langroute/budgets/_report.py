"""What ``langroute spend`` prints: spend and what is left, per scope and window period."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ._budget import utc_now
from ._store import SpendStore, open_store

__all__ = ["format_spend", "spend_report"]


def spend_report(store: SpendStore | str, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every account of an existing store as dicts: scope, window, period, limit_usd,
    spent_usd, reserved_usd (live holds only), remaining_usd."""
    opened = open_store(store, create=False)
    try:
        when = (now or utc_now()).timestamp()
        return [state.to_dict() for state in opened.accounts(now=when)]
    finally:
        if opened is not store:
            opened.close()


def format_spend(rows: list[dict[str, Any]], *, as_json: bool = False) -> str:
    """The report as JSON, or as an aligned text table."""
    if as_json:
        return json.dumps(rows, indent=2)
    if not rows:
        return "no spend recorded"
    head = ("scope", "window", "period", "limit_usd", "spent_usd", "reserved_usd",
            "remaining_usd")

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if not isinstance(value, float):
            return str(value)
        # Amounts are whole nano-USD: six decimals at least, nine when needed (at six, an
        # overspend of $0.0000004 read "-0.000000").
        whole, fraction = f"{value:.9f}".split(".")
        return f"{whole}.{fraction.rstrip('0').ljust(6, '0')}"

    table = [head] + [tuple(cell(row[key]) for key in head) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths, strict=True)))
                     .rstrip() for line in table)
