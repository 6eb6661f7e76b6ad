"""One suite, run against every store (memory://, sqlite:///, redis://): the store contract."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading

import pytest

from langroute import BudgetStoreError
from langroute.budgets import Account, open_store
from langroute.budgets._report import spend_report

ACCOUNT = Account("researcher", "day", "2026-12-01")


def reserve(store, amount, *, hold="h", now=0.0, lease=10.0, limit=100, enforce=True,
            account=ACCOUNT):
    return store.reserve(account, limit_nano=limit, amount_nano=amount, hold_id=hold, now=now,
                         expires_at=now + lease, enforce=enforce)


def test_reserve_holds_until_the_limit(store):
    granted, state = reserve(store, 60, hold="a")
    assert granted and (state.spent_nano, state.reserved_nano, state.limit_nano) == (0, 60, 100)
    granted, state = reserve(store, 41, hold="b")
    assert not granted and state.reserved_nano == 60  # a denial holds nothing
    granted, state = reserve(store, 40, hold="c")
    assert granted and state.reserved_nano == 100 and state.available_nano == 0


def test_commit_charges_the_actual_cost_and_frees_the_rest(store):
    reserve(store, 60, hold="a")
    state = store.commit(ACCOUNT, hold_id="a", cost_nano=25, now=1.0)
    assert (state.spent_nano, state.reserved_nano) == (25, 0)
    assert reserve(store, 75, hold="b", now=1.0)[0]
    assert not reserve(store, 1, hold="c", now=1.0)[0]


def test_release_frees_the_hold_and_charges_nothing(store):
    reserve(store, 60, hold="a")
    state = store.release(ACCOUNT, hold_id="a", now=1.0)
    assert (state.spent_nano, state.reserved_nano) == (0, 0)
    assert store.release(ACCOUNT, hold_id="a", now=1.0).reserved_nano == 0  # idempotent


def test_an_expired_hold_stops_counting_but_its_commit_is_still_charged(store):
    reserve(store, 80, hold="a", now=0.0, lease=5.0)
    assert store.state(ACCOUNT, now=4.9).reserved_nano == 80
    assert store.state(ACCOUNT, now=5.0).reserved_nano == 0
    assert reserve(store, 90, hold="b", now=6.0)[0]  # the lease passed: room again
    state = store.commit(ACCOUNT, hold_id="a", cost_nano=30, now=7.0)  # the late worker
    assert (state.spent_nano, state.reserved_nano) == (30, 90)


def test_an_unenforced_hold_may_pass_the_limit(store):
    store.commit(ACCOUNT, hold_id="x", cost_nano=100, now=0.0)
    assert not reserve(store, 10, hold="a")[0]
    granted, state = reserve(store, 10, hold="b", enforce=False)
    assert granted and state.reserved_nano == 10


def test_accounts_are_independent_and_listed(store):
    other = Account("researcher", "day", "2026-12-02")
    star = Account("*", "month", "2026-12")
    reserve(store, 100, hold="a")
    assert reserve(store, 100, hold="b", account=other)[0]
    store.commit(star, hold_id="none", cost_nano=7, now=0.0)
    rows = {(s.account.scope, s.account.period): s for s in store.accounts(now=1.0)}
    assert set(rows) == {("researcher", "2026-12-01"), ("researcher", "2026-12-02"),
                         ("*", "2026-12")}
    assert rows[("*", "2026-12")].spent_nano == 7 and rows[("*", "2026-12")].limit_nano is None
    assert rows[("researcher", "2026-12-01")].to_dict()["reserved_usd"] == pytest.approx(1e-7)


def test_concurrent_threads_never_overbook(store):
    """64 threads race for 10 slots: exactly 10 are granted, none lost."""

    def attempt(i: int) -> bool:
        return reserve(store, 10, hold=f"t{i}", limit=100)[0]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        granted = list(pool.map(attempt, range(64)))
    assert sum(granted) == 10
    assert store.state(ACCOUNT, now=0.0).reserved_nano == 100


def test_store_survives_reopening(store_url):
    if store_url == "memory://":
        pytest.skip("memory:// lives and dies with its object")
    store = open_store(store_url)
    reserve(store, 60, hold="a")
    store.commit(ACCOUNT, hold_id="a", cost_nano=42, now=1.0)
    store.close()
    again = open_store(store_url)
    assert again.state(ACCOUNT, now=1.0).spent_nano == 42
    assert spend_report(store_url)[0]["spent_usd"] == pytest.approx(42e-9)
    again.close()


async def test_async_forms_match_the_sync_ones(store):
    granted, state = await store.areserve(ACCOUNT, limit_nano=100, amount_nano=60,
                                          hold_id="a", now=0.0, expires_at=10.0)
    assert granted and state.reserved_nano == 60
    state = await store.acommit(ACCOUNT, hold_id="a", cost_nano=20, now=1.0)
    assert (state.spent_nano, state.reserved_nano) == (20, 0)
    await store.areserve(ACCOUNT, limit_nano=100, amount_nano=30, hold_id="b", now=1.0,
                         expires_at=10.0)
    state = await store.arelease(ACCOUNT, hold_id="b", now=2.0)
    assert (await store.astate(ACCOUNT, now=2.0)) == state and state.reserved_nano == 0



async def test_a_hold_granted_after_its_caller_was_cancelled_is_released(shared_store_url):
    """The worker thread of a cancelled ``areserve`` (e.g. a ``wait_for`` deadline while
    SQLite waits for another process's write) still grants the hold; it used to count, owned
    by no one, until its lease passed."""
    store = open_store(shared_store_url)
    entered, go, released = threading.Event(), threading.Event(), threading.Event()
    reserve_now, release_now = store.reserve, store.release

    def slow_reserve(*args, **kwargs):
        entered.set()
        go.wait(5)
        return reserve_now(*args, **kwargs)

    def noted_release(*args, **kwargs):
        state = release_now(*args, **kwargs)
        released.set()
        return state

    store.reserve, store.release = slow_reserve, noted_release
    task = asyncio.ensure_future(store.areserve(ACCOUNT, limit_nano=100, amount_nano=60,
                                                hold_id="a", now=0.0, expires_at=600.0))
    assert await asyncio.to_thread(entered.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    go.set()
    assert await asyncio.to_thread(released.wait, 5)
    assert store.state(ACCOUNT, now=1.0).reserved_nano == 0
    store.close()


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["postgres://localhost/db", "sqlite://relative.db", "", "memory"])
def test_unknown_store_url_is_a_clear_error(url):
    with pytest.raises(BudgetStoreError, match="unknown spend store URL"):
        open_store(url)


def test_sqlite_in_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(BudgetStoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path / 'nope' / 'spend.db'}")


def test_reading_a_missing_sqlite_store_does_not_create_it(tmp_path):
    path = tmp_path / "spend.db"
    with pytest.raises(BudgetStoreError, match="does not exist"):
        spend_report(f"sqlite:///{path}")
    assert not path.exists()


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path):
    path = tmp_path / "spend.db"
    path.write_bytes(b"not a database at all " * 100)
    with pytest.raises(BudgetStoreError, match="not a usable langroute spend store"):
        open_store(f"sqlite:///{path}")


def test_a_sqlite_file_with_foreign_tables_of_our_names_is_a_clear_error(tmp_path):
    path = tmp_path / "spend.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE langroute_budget_accounts (id INTEGER, total REAL)")
    with pytest.raises(BudgetStoreError, match="columns"):
        open_store(f"sqlite:///{path}")


def test_a_sqlite_store_of_another_schema_version_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'spend.db'}"
    open_store(url).close()
    with sqlite3.connect(tmp_path / "spend.db") as db:
        db.execute("UPDATE langroute_budget_meta SET value = '99'")
    with pytest.raises(BudgetStoreError, match="schema version '99'"):
        open_store(url)


def test_sqlite_refuses_an_amount_past_64_bits_with_a_store_error(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'spend.db'}")
    with pytest.raises(BudgetStoreError, match="64-bit"):
        reserve(store, 2**63, hold="a", enforce=False)
    with pytest.raises(BudgetStoreError, match="64-bit"):
        store.commit(ACCOUNT, hold_id="b", cost_nano=2**63, now=0.0)
    with pytest.raises(BudgetStoreError, match="64-bit"):
        reserve(store, 1, hold="c", limit=2**63)
    # each write was rolled back whole, and the store still works
    assert store.state(ACCOUNT, now=0.0).reserved_nano == 0
    granted, state = reserve(store, 60, hold="d")
    assert granted and (state.spent_nano, state.reserved_nano) == (0, 60)
    store.close()


def test_an_unreachable_redis_is_a_clear_error():
    with pytest.raises(BudgetStoreError, match="cannot reach spend store"):
        open_store(f"redis://127.0.0.1:{_closed_port()}/0")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends



def test_a_forked_child_uses_its_own_connection(store_url):
    """A store opened before ``fork`` (e.g. a pre-forking server) keeps working in the child."""
    import multiprocessing

    if store_url == "memory://":
        pytest.skip("memory:// is one process's own store")
    store = open_store(store_url)
    reserve(store, 10, hold="parent")
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_commit_in_child, args=(store,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    state = store.state(ACCOUNT, now=1.0)
    assert (state.spent_nano, state.reserved_nano) == (7, 10)


def _commit_in_child(store) -> None:
    store.commit(ACCOUNT, hold_id="child", cost_nano=7, now=1.0)


def test_a_hold_granted_as_its_event_loop_shuts_down_is_released(shared_store_url):
    """``asyncio.run`` of a script whose ``wait_for`` deadline passed while SQLite waited:
    the hold came back during the loop's executor shutdown, and releasing it in that executor
    failed ("cannot schedule new futures"), leaving it counted until its lease passed."""
    store = open_store(shared_store_url)
    entered, go = threading.Event(), threading.Event()
    reserve_now = store.reserve

    def slow_reserve(*args, **kwargs):
        entered.set()
        go.wait(5)
        return reserve_now(*args, **kwargs)

    store.reserve = slow_reserve

    async def script() -> None:
        reserving = asyncio.ensure_future(store.areserve(
            ACCOUNT, limit_nano=100, amount_nano=60, hold_id="a", now=0.0, expires_at=600.0))
        assert await asyncio.to_thread(entered.wait, 5)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reserving, 0.01)
        threading.Timer(0.2, go.set).start()  # granted once the loop is shutting down

    asyncio.run(script())
    for _ in range(100):
        if store.state(ACCOUNT, now=1.0).reserved_nano == 0:
            break
        threading.Event().wait(0.05)
    assert store.state(ACCOUNT, now=1.0).reserved_nano == 0
    store.close()


def test_a_redis_stores_errors_and_repr_never_show_its_password(redis_server):
    """The URL is in the store's errors and repr (logs); it used to carry the password."""
    import uuid

    import redis

    admin = redis.Redis.from_url(redis_server.url)
    user, secret = f"spend-{uuid.uuid4().hex[:8]}", f"pw{uuid.uuid4().hex}"
    admin.acl_setuser(user, enabled=True, passwords=[f"+{secret}"], keys=["*"],
                      commands=["+@all"])
    try:
        url = f"redis://{user}:{secret}@{redis_server.url.split('//', 1)[1]}"
        store = open_store(url)
        assert secret not in repr(store) and user in repr(store)
        reserve(store, 60, hold="a")  # it still reaches the server as that user
        assert store.state(ACCOUNT, now=0.0).reserved_nano == 60
        store.close()
        with pytest.raises(BudgetStoreError) as refused:
            open_store(url.replace(secret, "wrong-" + secret))
        assert secret not in str(refused.value) and "***" in str(refused.value)
    finally:
        admin.acl_deluser(user)
        admin.close()
