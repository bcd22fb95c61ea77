"""Type stubs for the compiled public library `fastgw._core` (see docs/embedding.md)."""
from collections.abc import Callable, Iterable

# --- path normalization (_core_src/path.pyx) ---

class PathError(ValueError):
    """The path is malformed or ambiguous (DESIGN §8); the gateway answers 400."""

def normalize_path(raw: bytes) -> bytes:
    """Normalize once, before routing and auth, so one resource has one spelling. Returns `raw`
    itself (no allocation) when it is already normal.

    Raises PathError for anything that must be refused: no leading '/', bytes outside 0x21-0x7E,
    '#', '\\', a bad '%' escape, %2F, %5C, %00, or '..' climbing above '/'.
    """

# --- routing (_core_src/trie.pyx) ---

class RouteMatch:
    """The answer of RouteTrie.match. Immutable because the 404, the 405s and the answers of
    routes without params are prebuilt and shared by every request; only the trie makes them
    (calling RouteMatch() raises TypeError)."""

    @property
    def status(self) -> int:
        """200, 404 or 405."""
    @property
    def target(self) -> object:
        """The object given to add(); None unless status is 200."""
    @property
    def params(self) -> dict[str, str] | None:
        """`{name}` / `{name*}` captures, still percent-encoded as in the normalized path; None
        when the route has no params."""
    @property
    def allow(self) -> bytes | None:
        """For 405, the Allow header value (b"GET, POST"); else None."""
    @property
    def prefix_len(self) -> int:
        """For a prefix route, the length of the prefix without its trailing slash (0 for '/'),
        which is what strip_prefix removes; else 0."""

class RouteTrie:
    """The compiled route table of one config generation: add() every route at load, then
    match() per request."""

    def __init__(self) -> None: ...
    def add(
        self,
        target: object,
        *,
        path: str | None = None,
        prefix: str | None = None,
        methods: Iterable[str] | None = None,
        host: str | None = None,
    ) -> None:
        """Validate at load so request time never has to. Exactly one of `path` (exact, or with
        whole-segment `{name}` and a last `{name*}`) and `prefix` (literal, whole segments), in
        normal form. `methods` None = any; `host` None = any, or a name, or `*.suffix`.

        Raises ValueError on a bad pattern, method or host, or on a duplicate (same host, same
        pattern shape, overlapping methods); TypeError on wrong argument types; RuntimeError
        after freeze(). A rejected route leaves the trie unchanged.
        """
    def freeze(self) -> None:
        """Refuse later add() calls, so a trie serving requests never changes under them."""
    def match(self, host: bytes, method: bytes, path: bytes) -> RouteMatch:
        """`host` is the Host header as received (case, port and trailing dot are ignored);
        `path` must come from normalize_path. Host-specific routes are preferred over host-less
        ones; 404 and 405 are answers, never exceptions."""

# --- rate limiting (_core_src/bucket.pyx) ---

def key_hash(limit_id: bytes, key: bytes, seed: int) -> int:
    """Seeded 64-bit key for (limit, client key); the limit is hashed in so limits sharing a
    table never share a bucket, and the secret seed keeps clients from aiming collisions at
    other clients' buckets. Never 0 (0 marks an empty slot)."""

class Limit:
    """A (rate, burst) limit compiled once at config load into the integer ns constants that
    decisions use, so no float math happens per request. The effective rate is 1e9/interval_ns
    (relative error <= 0.5/interval_ns).

    Raises ValueError unless 0 < rate <= 1e9 per second, burst >= 1, and burst/rate < 2**61 ns.
    """

    def __init__(self, rate: float, burst: float) -> None: ...
    @property
    def rate(self) -> float: ...
    @property
    def burst(self) -> float: ...
    @property
    def interval_ns(self) -> int:
        """ns per token."""
    @property
    def tau_ns(self) -> int:
        """Bucket depth in ns (burst * interval_ns)."""
    @property
    def max_n(self) -> int:
        """Largest n a single consume() can ever be allowed."""

class TokenBucket:
    """One process-local bucket for code that embeds the core without shared memory. Starts
    full. `clock` (monotonic ns) is for tests; without it CLOCK_MONOTONIC is read from C and a
    decision never calls Python."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], int] | None = None
    ) -> None: ...
    @property
    def limit(self) -> Limit: ...
    def consume(self, n: int = 1) -> bool:
        """Take n tokens if present; a refusal takes nothing."""
    def time_to_next(self) -> float:
        """Seconds until one token is available, 0.0 if now: the basis of Retry-After."""
    @property
    def remaining(self) -> int:
        """Whole tokens now (RateLimit-Remaining)."""
    @property
    def reset_after(self) -> float:
        """Seconds until full again (RateLimit-Reset)."""

class BucketTable:
    """Buckets for many keys in a shared buffer (an `mmap.mmap(-1, size_for(capacity),
    flags=MAP_SHARED)` the master formats with init=True before forking; workers attach with
    init=False), so a limit holds for the whole host whatever the worker count. Each decision
    is one 16-byte compare-and-swap: exact across processes, and a killed worker cannot leave
    it locked or half-written. A non-full bucket is evicted only when its 8-slot probe window
    has no empty or full slot; the key then restarts full (see `stats()['evictions']`)."""

    def __init__(
        self,
        buffer: object,
        capacity: int,
        *,
        init: bool,
        clock: Callable[[], int] | None = None,
    ) -> None:
        """Raises ValueError if the buffer is too small, not 16-byte aligned, or (init=False)
        not formatted, of another layout version or of another capacity; TypeError if it is
        read-only. Holds the buffer, so the mmap cannot be closed under the table."""
    @staticmethod
    def size_for(capacity: int) -> int:
        """Bytes needed: a 64-byte header plus 16 bytes per slot, capacity rounded up to a
        power of two (at least 8)."""
    @property
    def capacity(self) -> int: ...
    @property
    def seed(self) -> int:
        """Drawn at format time and stored in the buffer, so every worker hashes alike."""
    def key_hash(self, limit_id: bytes, key: bytes) -> int:
        """key_hash(limit_id, key, self.seed)."""
    def consume(self, key: int, limit: Limit, n: int = 1) -> bool:
        """Take n tokens from key's bucket (new buckets start full); a refusal takes nothing.
        The outcome's numbers go to the attributes below rather than a result object, so a
        decision allocates nothing: read them before the next consume() in this process."""
    @property
    def remaining(self) -> int:
        """Whole tokens left after the last decision (RateLimit-Remaining)."""
    @property
    def retry_after_ns(self) -> int:
        """After the last decision, ns until the same n would be allowed (0 if now;
        2**63-1 if n > burst, never)."""
    @property
    def retry_after(self) -> float:
        """retry_after_ns in seconds (inf for never); Retry-After is its ceiling."""
    @property
    def reset_after_ns(self) -> int:
        """After the last decision, ns until that bucket is full again."""
    @property
    def reset_after(self) -> float:
        """reset_after_ns in seconds; RateLimit-Reset is its ceiling."""
    def stats(self) -> dict[str, int]:
        """capacity; used (slots ever claimed, only grows); active (buckets not full now: what
        to size capacity against); evictions (non-full buckets dropped for room)."""

def monotonic() -> float:
    """CLOCK_MONOTONIC in seconds: the clock of the buckets and of the proxy's timeouts."""
