"""A worker process hammering one budget through the real pipeline (used by the reliability
tests): ``python -m tests.unit_tests.budgets._worker STORE_URL LIMIT_USD CALLS [SLEEP_S]``.

Prints ``committed <nano-USD>`` after every call whose commit returned, ``denied`` for every
denied call, and at the end one JSON line with its totals (provider calls, commits, denials).
"""

from __future__ import annotations

import json
import sys
import time

from langroute import Budget, BudgetExceededError
from langroute.budgets import budget_step
from langroute.pipeline import run_sync

from .helpers import EASY, PRICES, REFS, FakeCaller, estimate, pipeline, request


def main(url: str, limit_usd: float, calls: int, sleep_s: float) -> None:
    guard = budget_step({"*": Budget(limit_usd=limit_usd)}, url, REFS, PRICES,
                        lease_seconds=30.0)
    caller = FakeCaller(on_call=lambda ref: time.sleep(sleep_s) if sleep_s else None)
    pipe = pipeline(guard)
    committed = denied = 0
    print("ready", flush=True)
    for _ in range(calls):
        try:
            result = run_sync(pipe.run(request(EASY), estimate=estimate), caller)
        except BudgetExceededError:
            denied += 1
            print("denied", flush=True)
            continue
        cost = round(result.attempts[-1].cost_usd * 1e9)
        committed += cost
        print(f"committed {cost}", flush=True)
    print(json.dumps({"provider_calls": len(caller.calls), "committed_nano": committed,
                      "denied": denied}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]),
         float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
