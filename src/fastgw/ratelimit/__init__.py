"""Rate limits (DESIGN §4, §8; issue 5): named token-bucket limits checked by a request filter on
the routes that list them.

- `shared`: what the master creates before forking: the shared-memory bucket table, so that every
  worker, and every worker that replaces one, decides against the same buckets (local scope), and
  the counters rows the workers publish to.
- `keys`: which bytes of a request name its bucket.
- `filter`: the per-route request filter, and the local-scope limit it decides with.
- `cluster`: cluster-scope limits: Redis holds the buckets, each worker leases tokens from it.
- `build`: turns the configuration into those objects once per worker and attaches the filters.
"""
from __future__ import annotations

from .build import WorkerRateLimits, attach_rate_limits
from .shared import SharedBuckets, shared_buckets

__all__ = ["SharedBuckets", "WorkerRateLimits", "attach_rate_limits", "shared_buckets"]
