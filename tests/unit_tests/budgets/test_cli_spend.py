"""``langroute spend --store URL [--json]``: per scope and window, limit, spent, reserved."""

from __future__ import annotations

import json

import pytest

from langroute.budgets import Account, open_store
from langroute.cli import main


@pytest.fixture
def filled(shared_store_url):
    store = open_store(shared_store_url)
    researcher = Account("researcher", "day", "2026-12-01")
    store.reserve(researcher, limit_nano=5 * 10**9, amount_nano=3 * 10**8, hold_id="a",
                  now=0.0, expires_at=4e9)  # held until far in the future
    store.reserve(researcher, limit_nano=5 * 10**9, amount_nano=10**8, hold_id="b", now=0.0,
                  expires_at=4e9)
    store.commit(researcher, hold_id="b", cost_nano=25 * 10**6, now=1.0)
    star = Account("*", "month", "2026-12")
    store.reserve(star, limit_nano=10**9, amount_nano=10**6, hold_id="c", now=0.0,
                  expires_at=1.0)  # long expired
    store.commit(star, hold_id="c", cost_nano=7 * 10**5, now=0.5)
    store.close()
    return shared_store_url


def test_spend_json_lists_every_scope_and_window(filled, capsys):
    assert main(["spend", "--store", filled, "--json"]) == 0
    rows = {row["scope"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["researcher"] == {
        "scope": "researcher", "window": "day", "period": "2026-12-01", "limit_usd": 5.0,
        "spent_usd": 0.025, "reserved_usd": 0.3, "remaining_usd": pytest.approx(4.675)}
    assert rows["*"]["window"] == "month" and rows["*"]["spent_usd"] == pytest.approx(7e-4)
    assert rows["*"]["reserved_usd"] == 0.0 and rows["*"]["limit_usd"] == 1.0


def test_spend_table_is_readable(filled, capsys):
    assert main(["spend", "--store", filled]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["scope", "window", "period", "limit_usd", "spent_usd",
                                "reserved_usd", "remaining_usd"]
    assert lines[2].split()[:5] == ["researcher", "day", "2026-12-01", "5.000000", "0.025000"]


@pytest.mark.parametrize("url, match", [
    ("postgres://x/y", "unknown spend store URL"),
    ("sqlite:////nonexistent-folder-xyz/spend.db", "does not exist"),
    ("memory://", "inside one process"),
])
def test_spend_errors_exit_1_with_the_reason(url, match, capsys):
    assert main(["spend", "--store", url]) == 1
    assert match in capsys.readouterr().err


def test_spend_needs_a_store(capsys):
    assert main(["spend"]) == 2


@pytest.mark.parametrize("content, match", [
    (b"", "holds no langroute spend store"),
    (b"not a database at all, just text" * 200, "is not a usable langroute spend store"),
])
def test_spend_leaves_a_file_that_is_no_store_as_it_was(tmp_path, capsys, content, match):
    """`langroute spend` reads, never creates: it once wrote an SQLite header into the file."""
    path = tmp_path / "spend.db"
    path.write_bytes(content)
    assert main(["spend", "--store", f"sqlite:///{path}"]) == 1
    assert match in capsys.readouterr().err
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spend.db"]  # no -wal / -shm files


def test_spend_table_shows_amounts_below_a_millionth():
    """At six decimals an overspend of $0.0000004 read "-0.000000", hiding it."""
    from langroute.budgets._report import format_spend

    row = {"scope": "bot", "window": "day", "period": "2026-12-01", "limit_usd": 0.001,
           "spent_usd": 0.0010004, "reserved_usd": 0.0, "remaining_usd": -0.0000004}
    table = format_spend([row])
    assert "-0.0000004" in table and "0.0010004" in table
    assert " 0.001000 " in table + " "  # a plain amount keeps six decimals
