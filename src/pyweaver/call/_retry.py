"""How often and how long to retry: exponential backoff with jitter, and a retry budget.

Backoff follows Service Weaver (``weaver:runtime/retry/retry.go``): before retry ``n``
(1, 2, ...) sleep ``10 ms x 1.3**n`` minus up to 40 % jitter, but unlike Go the delay is
capped (2 s) and the attempts are bounded. The retry budget is a token bucket shared by
all calls of one client: every call adds ``budget_ratio`` of a token, the bucket also
refills at ``budget_min_per_second``, and every retry takes a whole token. So retries add
at most about 20 % load on top of the calls (plus a small floor), and a replica that keeps
failing cannot be hammered into the ground by a retry storm.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import attrs

__all__ = ["RetryBudget", "RetryPolicy", "backoff_delay"]


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Bounds on the automatic retries of one client (and its reconnects)."""

    max_attempts: int = 10  # attempts per call, the first one included
    initial_backoff: float = 0.010  # seconds; the n-th retry waits about this x multiplier**n
    multiplier: float = 1.3
    jitter: float = 0.4  # a delay is reduced by a random 0..jitter fraction
    max_backoff: float = 2.0  # seconds
    budget_ratio: float = 0.2  # tokens added per call
    budget_min_per_second: float = 10.0  # tokens added per second regardless of calls
    budget_window: float = 10.0  # seconds of refill the bucket holds at most

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1.0:
            raise ValueError("backoff must be non-negative and non-shrinking")


def backoff_delay(
    policy: RetryPolicy, attempt: int, uniform: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
    nominal = policy.initial_backoff * policy.multiplier ** min(attempt, 200)
    return min(policy.max_backoff, nominal) * (1.0 - policy.jitter * uniform())


class RetryBudget:
    """A token bucket of retries (see the module docstring)."""

    __slots__ = ("_capacity", "_clock", "_last", "_policy", "_seen_calls", "_tokens")

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._capacity = max(1.0, policy.budget_min_per_second * policy.budget_window)
        self._tokens = self._capacity
        self._last = clock()
        self._seen_calls = 0

    def try_withdraw(self, calls: int) -> bool:
        """Take one token for a retry; False when the budget is spent. ``calls`` is how
        many calls the client has made so far (the client counts them on its hot path;
        they turn into tokens here, lazily)."""
        now = self._clock()
        policy = self._policy
        earned = (now - self._last) * policy.budget_min_per_second + (
            calls - self._seen_calls
        ) * policy.budget_ratio
        self._last = now
        self._seen_calls = calls
        self._tokens = min(self._capacity, self._tokens + earned)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
