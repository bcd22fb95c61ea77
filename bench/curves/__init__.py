"""Cost curves (issue 14, item 2): how each cost of fastgw grows as the work grows, next to nginx
where nginx can do the same work. One mode each, run as `python -m bench MODE` (see
bench/README.md):

- `connections`: concurrent keep-alive connections (64 → 1,000 → 10,000): req/s, p99, CPU and
  memory per connection;
- `body`: body size (4 KiB → 1 MiB → 100 MiB), both directions: GB/s and peak memory;
- `routes`: route-table size (10 → 1,000 → 100,000): match time, memory, config check and reload
  time;
- `ratelimit`: distinct rate-limit keys (1,000 → 1,000,000): decision time, table occupancy,
  evictions;
- `websocket`: WebSocket connections (1 → 64 → 1,000): echo round trips per second through a
  tunnel route and through nginx, latency, CPU per round trip, memory per connection.

Each writes `bench/out/curve-MODE-<UTC time>.json` and `.png`, and prints the growth exponent of
each figure between consecutive points, flagging any that grows faster than it should.
"""

MODES = ("connections", "body", "routes", "ratelimit", "websocket")
