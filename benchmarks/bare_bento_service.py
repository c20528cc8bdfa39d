"""The baseline for benchmarks/wrk_http.py: a BentoML service whose endpoint returns a constant.

The same framework, settings and request shape as `bilstm serve` (``POST /classify`` with ``{"texts": [...]}``,
adaptive batching, workers from ``BARE_WORKERS``, no access log, no metrics), and no model: what is left is
BentoML's own cost per request, which ours is compared with.

    BARE_WORKERS=2 bentoml serve benchmarks.bare_bento_service:BareService --port 3001
"""

from __future__ import annotations

import os

import bentoml


@bentoml.service(workers=int(os.environ.get("BARE_WORKERS", "2")), logging={"access": {"enabled": False}},
                 metrics={"enabled": False})
class BareService:
    """One endpoint, batchable like ours, answering a fixed label per text."""

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=2000)
    def classify(self, texts: list[str]) -> list[dict]:
        return [{"label": "pos", "score": 1.0} for _ in texts]
