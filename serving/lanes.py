"""Route lanes: each model route admits, queues and runs its requests on its own, so a slow route cannot starve another.

BentoML runs every synchronous endpoint of a worker through one shared thread limiter (``threads``, default 1):
eight slow ``/generate`` requests queued there held ``/classify`` behind them (0.01× its throughput alone, and its
adaptive batcher, seeing the wait, shed the rest with 503). Here every route has

* **its own threads**: the endpoints are coroutines that hand the model call to ``anyio.to_thread`` with the
  route's own ``CapacityLimiter`` (one thread for a batched route — its batcher runs one batch at a time anyway),
  so routes never wait in each other's queue (``/generate`` goes further: a process of its own,
  ``serving/generator.py``);
* **its own admission limit** (checked by the request gate before the body is parsed): at most
  ``BILSTM_MAX_IN_FLIGHT`` requests running or queued on a worker (``BILSTM_GENERATE_MAX_IN_FLIGHT`` for
  ``/generate``); one more is refused with **429**, a JSON body naming the route, and ``Retry-After``: the
  route's queue, in seconds of its recent service time. A bounded queue is also why the server recovers as
  soon as the load stops: little is left queued behind clients that went away.
* **refusals that cost nothing**: the 429 is sent before the body is read, and held back for up to
  ``REFUSAL_HOLD_S`` (never longer than its own ``Retry-After``). A client that retries at once instead of
  waiting (wrk, a naive retry loop) otherwise turns refusals into a busy loop: 800–1,600 refusals/s took the
  worker's event loop from ``/classify`` (0.03–0.17× its throughput alone, measured); held, eight such
  connections cost eight refusals a second.

Every refusal writes one log line (no traceback). Counts are per worker process (each has its own lanes).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

logger = logging.getLogger("bentoml.bilstm")
Result = TypeVar("Result")

MAX_RETRY_AFTER_S = 60
REFUSAL_HOLD_S = 1.0
SMOOTHING = 0.2
"""Weight of the newest request in a route's moving mean service time (about the last ten requests)."""


@dataclass(frozen=True)
class LaneLimits:
    """How many requests of a route run at once and how many may be admitted (running + queued) per worker."""

    concurrency: int
    max_in_flight: int


@dataclass(frozen=True)
class Saturated:
    """A refusal: the route's lane is full."""

    route: str
    in_flight: int
    limit: int
    retry_after_s: int

    def payload(self) -> dict[str, Any]:
        """The JSON body of the 429."""
        return {"error": f"{self.route} is saturated on this worker: {self.in_flight} requests running or queued "
                         f"(the limit is {self.limit}); retry after {self.retry_after_s} s",
                "route": self.route, "in_flight": self.in_flight, "limit": self.limit,
                "retry_after_s": self.retry_after_s}


class RouteLanes:
    """The lanes of one worker: admission counts, thread limiters and service-time estimates, by route path."""

    def __init__(self, limits: dict[str, LaneLimits]) -> None:
        """``limits``: route path (``/classify``) → its limits."""
        self.limits = dict(limits)
        self.in_flight = dict.fromkeys(self.limits, 0)
        self.mean_seconds = dict.fromkeys(self.limits, 0.0)
        # anyio creates a limiter lazily when it is made outside an event loop (here: at import, per worker).
        self._limiters = {route: anyio.CapacityLimiter(limit.concurrency) for route, limit in self.limits.items()}

    def refusal(self, route: str) -> Saturated | None:
        """The 429 to send when ``route``'s lane is full; None when a request may be admitted."""
        limit = self.limits[route]
        if self.in_flight[route] < limit.max_in_flight:
            return None
        return Saturated(route, self.in_flight[route], limit.max_in_flight, self.retry_after(route))

    async def hold(self, refusal: Saturated) -> None:
        """Wait before a refusal goes out (see the module docstring): ``REFUSAL_HOLD_S`` at most."""
        await anyio.sleep(min(REFUSAL_HOLD_S, refusal.retry_after_s))

    def retry_after(self, route: str) -> int:
        """Seconds until the lane has room, from its queue and recent service time: 1..60."""
        limit = self.limits[route]
        queued = self.in_flight[route] - limit.concurrency + 1
        estimate = self.mean_seconds[route] * max(1, queued) / limit.concurrency
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(estimate)))

    @contextmanager
    def admitted(self, route: str) -> Iterator[None]:
        """Count a request in ``route``'s lane while it is answered, and learn how long it took."""
        self.in_flight[route] += 1
        started = time.perf_counter()
        try:
            yield
        finally:
            self.in_flight[route] -= 1
            seconds = time.perf_counter() - started
            mean = self.mean_seconds[route]
            self.mean_seconds[route] = seconds if mean == 0 else (1 - SMOOTHING) * mean + SMOOTHING * seconds

    async def run(self, route: str, function: Callable[..., Result], *args: Any) -> Result:
        """``function(*args)`` on one of ``route``'s own threads (waiting for one when all are busy)."""
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiters[route])


def log_refusal(status: int, route: str, reason: str, retry_after_s: int) -> None:
    """The one log line of an overload refusal."""
    logger.warning("bilstm: %d %s: %s; Retry-After %d s", status, route, reason, retry_after_s)


class DropOverloadTracebacks(logging.Filter):
    """Drops BentoML's own error record (with its traceback) for a request its batcher shed as overloaded.

    The request gate answers such a request with its own JSON 503 and writes one line for it (:func:`log_refusal`);
    BentoML's record would add a traceback per refusal (61 MB of log for 26k refusals in one overload).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from bentoml.exceptions import ServiceUnavailable

        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, ServiceUnavailable)
