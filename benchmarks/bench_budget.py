"""Budget overhead per call: reserve + commit (and admit + reserve + commit), p50/p99, per store.

Each store (``memory://``, ``sqlite:///`` in a temp folder, ``redis://`` on a redis-server this
script starts on a free loopback port) takes ``--calls`` sequential calls through the real
``BudgetGuard`` (pricing by genai-prices' table, worst-case reservation, atomic store writes);
the time of each call's budget work is measured with ``perf_counter``. Then the same with
``--concurrency`` asyncio tasks at once (the async forms; per-call latency includes waiting for
the store under contention). No provider is called: this is the budget's own cost.

Reliability figures (``--reliability``, on SQLite and Redis): 500 concurrent async calls in
this process plus 4 worker processes (150 calls each) on ONE budget sized for about half of
them -- granted and denied calls, spend against the limit, commits lost (store spend minus the
commits callers saw), provider calls made by denied calls; then a worker is ``kill -9``-ed
mid-call -- its reported commits against the store, its hold right after, and after the lease.
Each "provider call" is a counter and a short sleep; the same scenarios run through the whole
pipeline in ``tests/unit_tests/budgets/test_reliability.py``.

Run:  python benchmarks/bench_budget.py [--calls 2000] [--concurrency 50] [--reliability]
      [--out DIR]
Writes DIR/budget.md and DIR/budget.json (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _provenance import cpu_model, dirty_files, head_commit  # noqa: E402

from langroute import Budget  # noqa: E402
from langroute.budgets import budget_step  # noqa: E402
from langroute.pipeline import (  # noqa: E402
    Answer,
    CallContext,
    CallState,
    ModelRef,
    RouteRequest,
    TokenEstimate,
    Usage,
)

REFS = {"cheap": ModelRef("cheap", provider_model="gpt-4o-mini", provider="openai"),
        "strong": ModelRef("strong", provider_model="gpt-4o", provider="openai")}
ANSWER = Answer(raw=None, text="ok", usage=Usage(input_tokens=800, output_tokens=200,
                                                  cache_read_tokens=300))


class _Decision:
    """The slice of a RoutingDecision the budget step reads on a hard budget."""

    model = "cheap"
    threshold = 0.5


def _state() -> CallState:
    request = RouteRequest(text="hi", context=CallContext(metadata={"lc_agent_name": "bench"}))
    return CallState(context=request.context, request=request, policy=None,  # type: ignore[arg-type]
                     decision=_Decision(),  # type: ignore[arg-type]
                     estimate=lambda ref: TokenEstimate(1000, 512))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise RuntimeError("redis-server did not start")


def _percentiles(ms: list[float]) -> dict[str, float]:
    values = np.asarray(ms)
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(values.mean()), "n": len(ms)}


def bench_sync(url: str, calls: int, with_admit: bool) -> dict[str, float]:
    guard = budget_step({"bench": Budget(limit_usd=1e6)}, url, REFS)
    state = _state()
    for _ in range(50):  # warm-up (connections, statement caches, Lua script load)
        guard.commit(guard.reserve(state, REFS["cheap"]), ANSWER)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        if with_admit:
            guard.store.state(guard.account_of(state)[0], now=time.time())  # what admit reads
        hold = guard.reserve(state, REFS["cheap"])
        guard.commit(hold, ANSWER)
        times.append((time.perf_counter() - start) * 1000.0)
    guard.store.close()
    return _percentiles(times)


def bench_async(url: str, calls: int, concurrency: int) -> dict[str, float]:
    guard = budget_step({"bench": Budget(limit_usd=1e6)}, url, REFS)
    state = _state()
    times: list[float] = []

    async def one() -> None:
        start = time.perf_counter()
        hold = await guard.areserve(state, REFS["cheap"])
        await guard.acommit(hold, ANSWER)
        times.append((time.perf_counter() - start) * 1000.0)

    async def run() -> float:
        semaphore = asyncio.Semaphore(concurrency)

        async def bounded() -> None:
            async with semaphore:
                await one()

        start = time.perf_counter()
        await asyncio.gather(*(bounded() for _ in range(calls)))
        return time.perf_counter() - start

    wall = asyncio.run(run())
    guard.store.close()
    out = _percentiles(times)
    out["calls_per_s"] = calls / wall
    return out


# -- reliability ----------------------------------------------------------------------------------
ASYNC_CALLS, WORKERS, WORKER_CALLS = 500, 4, 150
LEASE_S = 30.0


def _worker_main(url: str, limit: float, calls: int, sleep_s: float) -> None:
    """A worker process: reserve -> provider call -> commit, reporting each commit."""
    from langroute import BudgetExceededError

    guard = budget_step({"bench": Budget(limit_usd=limit)}, url, REFS, lease_seconds=LEASE_S)
    state = _state()
    provider_calls = committed = denied = 0
    print("ready", flush=True)
    for _ in range(calls):
        try:
            hold = guard.reserve(state, REFS["cheap"])
        except BudgetExceededError:
            denied += 1
            continue
        provider_calls += 1
        time.sleep(sleep_s)
        info = guard.commit(hold, ANSWER)
        cost = round(info["cost_usd"] * 1e9)
        committed += cost
        print(f"committed {cost}", flush=True)
    print(json.dumps({"provider_calls": provider_calls, "committed_nano": committed,
                      "denied": denied}), flush=True)


def _spawn(url: str, limit: float, calls: int, sleep_s: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, __file__, "--worker", url, repr(limit), str(calls),
                             repr(sleep_s)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _account_state(url: str, now: float) -> Any:
    from langroute.budgets import Account, open_store

    store = open_store(url)
    try:
        return store.state(Account("bench", "total", "total"), now=now)
    finally:
        store.close()


def reliability_contention(url: str) -> dict[str, Any]:
    from langroute import BudgetExceededError

    one_call = budget_step({"bench": Budget(limit_usd=1.0)}, "memory://", REFS)
    actual = round(one_call.prices.cost(REFS["cheap"], ANSWER.usage, datetime.now(UTC)) * 10**9)
    reservation = one_call.worst_case_nano(_state(), REFS["cheap"])
    total = ASYNC_CALLS + WORKERS * WORKER_CALLS
    limit_nano = actual * total // 2
    limit = limit_nano / 1e9
    workers = [_spawn(url, limit, WORKER_CALLS, 0.0) for _ in range(WORKERS)]
    guard = budget_step({"bench": Budget(limit_usd=limit)}, url, REFS)
    state = _state()
    provider_calls = 0

    async def one() -> int | None:
        nonlocal provider_calls
        try:
            hold = await guard.areserve(state, REFS["cheap"])
        except BudgetExceededError:
            return None
        provider_calls += 1
        await asyncio.sleep(0.001)
        info = await guard.acommit(hold, ANSWER)
        return round(info["cost_usd"] * 1e9)

    async def burst() -> list[int | None]:
        return await asyncio.gather(*(one() for _ in range(ASYNC_CALLS)))

    start = time.perf_counter()
    costs = asyncio.run(burst())
    reports = []
    for proc in workers:
        out, _ = proc.communicate(timeout=300)
        reports.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - start
    guard.store.close()
    seen = sum(c for c in costs if c is not None) + sum(r["committed_nano"] for r in reports)
    granted = sum(c is not None for c in costs) + sum(
        r["committed_nano"] // actual for r in reports)
    calls_made = provider_calls + sum(r["provider_calls"] for r in reports)
    after = _account_state(url, time.time())
    return {"calls": total, "granted": granted, "denied": total - granted,
            "limit_usd": limit, "spent_usd": after.spent_nano / 1e9,
            "overshoot_usd": (after.spent_nano - limit_nano) / 1e9,
            "one_reservation_usd": reservation / 1e9,
            "lost_commits_usd": (seen - after.spent_nano) / 1e9,
            "provider_calls_by_denied_calls": calls_made - granted,
            "reserved_after_usd": after.reserved_nano / 1e9, "wall_s": wall}


def reliability_crash(url: str) -> dict[str, Any]:
    worker = _spawn(url, 1000.0, 100_000, 0.05)
    assert worker.stdout is not None
    reported = []
    while len(reported) < 8:
        reported.append(int(worker.stdout.readline().split()[1]))
    time.sleep(0.02)
    worker.kill()  # SIGKILL
    worker.wait()
    rest = worker.stdout.read().split()
    reported += [int(v) for k, v in zip(rest[::2], rest[1::2], strict=False) if k == "committed"]
    now = time.time()
    after = _account_state(url, now)
    later = _account_state(url, now + LEASE_S + 1)
    return {"reported_commits": len(reported), "reported_usd": sum(reported) / 1e9,
            "stored_usd": after.spent_nano / 1e9,
            "lost_usd": max(sum(reported) - after.spent_nano, 0) / 1e9,
            "held_after_kill_usd": after.reserved_nano / 1e9,
            "held_after_lease_usd": later.reserved_nano / 1e9, "lease_s": LEASE_S}


def _machine() -> dict[str, Any]:
    cpu = cpu_model()
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True).stdout.strip()
    import redis

    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "redis_server": redis_version, "redis_py": redis.__version__,
            "load_avg_1m_at_start": os.getloadavg()[0]}


def _commit() -> str:
    return head_commit() + (" (with uncommitted changes)" if dirty_files() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--reliability", action="store_true",
                        help="also run the contention and kill -9 scenarios")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, limit, calls, sleep_s = args.worker
        _worker_main(url, float(limit), int(calls), float(sleep_s))
        return
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (apt-get install -y redis-server)")
    machine = _machine()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc, redis_url = _start_redis(tmp)
        try:
            stores = {"memory": lambda: "memory://",
                      "sqlite": lambda: f"sqlite:///{tempfile.mkdtemp(dir=tmp)}/spend.db",
                      "redis": lambda: redis_url}
            for name, url in stores.items():
                results[name] = {
                    "reserve_commit": bench_sync(url(), args.calls, with_admit=False),
                    "admit_reserve_commit": bench_sync(url(), args.calls, with_admit=True),
                    f"async_x{args.concurrency}": bench_async(url(), args.calls,
                                                              args.concurrency),
                }
                print(name, json.dumps(results[name]), flush=True)
            if args.reliability:
                from redis import Redis

                for name in ("sqlite", "redis"):
                    if name == "redis":
                        Redis.from_url(redis_url).flushdb()
                    contention = reliability_contention(stores[name]())
                    if name == "redis":
                        Redis.from_url(redis_url).flushdb()
                    crash = reliability_crash(stores[name]())
                    results[name]["reliability"] = {"contention": contention, "crash": crash}
                    print(name, json.dumps(results[name]["reliability"]), flush=True)
        finally:
            redis_proc.terminate()
            redis_proc.wait()
    meta = {"commit": _commit(), "command": "python " + " ".join(sys.argv),
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine,
            "calls": args.calls, "concurrency": args.concurrency}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "budget.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2)
                                     + "\n")
    lines = ["# Budget overhead per call (bench_budget.py)", "",
             f"- commit: {meta['commit']}", f"- command: `{meta['command']}`",
             f"- date: {meta['date']}",
             f"- machine: {machine['cpu']}, {machine['cpus']} CPUs (shared; 1-min load "
             f"{machine['load_avg_1m_at_start']:.1f} at start), {machine['platform']}",
             f"- Python {machine['python']}, SQLite {machine['sqlite']}, "
             f"{machine['redis_server'].split(' sha')[0]}, redis-py {machine['redis_py']}", "",
             "Budget work per call, in ms (no provider call). Sequential: one caller; "
             f"async: {args.concurrency} tasks at once (latency includes waiting for the store).",
             "", "| store | reserve+commit p50 | p99 | admit+reserve+commit p50 | p99 | "
             f"async x{args.concurrency} p50 | p99 | async calls/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, res in results.items():
        rc, arc = res["reserve_commit"], res["admit_reserve_commit"]
        asy = res[f"async_x{args.concurrency}"]
        lines.append(f"| {name} | {rc['p50_ms']:.3f} | {rc['p99_ms']:.3f} | "
                     f"{arc['p50_ms']:.3f} | {arc['p99_ms']:.3f} | {asy['p50_ms']:.2f} | "
                     f"{asy['p99_ms']:.2f} | {asy['calls_per_s']:.0f} |")
    if args.reliability:
        lines += ["", f"Reliability: {ASYNC_CALLS} async calls + {WORKERS} processes x "
                  f"{WORKER_CALLS} calls on one budget sized for half of them; then kill -9 of "
                  "a worker mid-call.", "",
                  "| store | granted | denied | spent / limit USD | overshoot USD (1 reservation)"
                  " | lost USD | provider calls by denied | kill -9: reported / stored USD | "
                  "held after kill | after lease |", "|---|" + "---:|" * 9]
        for name in ("sqlite", "redis"):
            c = results[name]["reliability"]["contention"]
            k = results[name]["reliability"]["crash"]
            lines.append(
                f"| {name} | {c['granted']} | {c['denied']} | {c['spent_usd']:.6f} / "
                f"{c['limit_usd']:.6f} | {c['overshoot_usd']:+.6f} ({c['one_reservation_usd']:.6f})"
                f" | {c['lost_commits_usd']:.6f} | {c['provider_calls_by_denied_calls']} | "
                f"{k['reported_usd']:.6f} / {k['stored_usd']:.6f} | "
                f"{k['held_after_kill_usd']:.6f} | {k['held_after_lease_usd']:.6f} |")
    (out / "budget.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
