"""A commit or release whose caller is cancelled while the store write waits for a worker
thread is still done: the call it settles was made (a commit) or its hold must go (a release)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from langroute.budgets import Account, open_store

ACCOUNT = Account("*", "total", "total")


async def _cancelled_while_queued(settle) -> None:
    """Start ``settle()`` while the loop's only worker thread is busy (its job waits in the
    executor's queue, as under load), cancel it, then free the worker."""
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(pool)
    busy, free = threading.Event(), threading.Event()

    def occupy() -> None:
        busy.set()
        free.wait(10)

    blocker = loop.run_in_executor(None, occupy)
    assert busy.wait(10)
    task = asyncio.ensure_future(settle())
    for _ in range(3):  # let the task queue its job behind the blocker
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    free.set()
    await blocker


@pytest.mark.parametrize("action", ["commit", "release"])
async def test_a_settle_cancelled_while_its_write_is_queued_is_still_done(shared_store_url,
                                                                          action):
    """Under load (a busy default executor) a cancellation (an ``asyncio.wait_for`` deadline
    as the answer came back) dropped the queued commit: the billed call was never charged
    and its hold counted until its lease passed."""
    store = open_store(shared_store_url)
    done = threading.Event()
    write = getattr(store, action)

    def noted(*args, **kwargs):
        state = write(*args, **kwargs)
        done.set()
        return state

    setattr(store, action, noted)
    granted, _ = store.reserve(ACCOUNT, limit_nano=100, amount_nano=60, hold_id="a", now=0.0,
                               expires_at=600.0)
    assert granted
    if action == "commit":
        await _cancelled_while_queued(lambda: store.acommit(ACCOUNT, hold_id="a", cost_nano=25,
                                                            now=1.0))
    else:
        await _cancelled_while_queued(lambda: store.arelease(ACCOUNT, hold_id="a", now=1.0))
    assert await asyncio.to_thread(done.wait, 10)
    state = store.state(ACCOUNT, now=1.0)
    assert state.reserved_nano == 0
    assert state.spent_nano == (25 if action == "commit" else 0)
    store.close()
