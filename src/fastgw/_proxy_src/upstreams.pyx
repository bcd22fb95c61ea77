# Targets, keep-alive pools, balancers, the retry budget and the upstream group (see
# upstreams.pxd). Ported from plain Python, line for line where possible, because callgrind
# showed the calls into them (pick, begin, take, give, on_success, on_request) as the largest
# part of a request left in the bytecode loop: about 10,000 of 47,800 instructions.

from libc.math cimport exp

import asyncio as _asyncio
import random as _random
from bisect import bisect as _bisect

EWMA_ALPHA = 0.3
"""Weight of the newest latency sample: a target turning slow shows within a few requests."""
EWMA_DECAY = 5.0
"""Seconds over which the estimate of an idle target fades by 1/e: a target that was slow is
tried again once it has been left alone for a while, and its next samples start from the faded
value rather than from a stale one."""
IDLE_ROUNDS = 4.0
"""For `p2c_ewma`: rounds of its upstream's picks (a round: one pick per target) over which the
estimate of a target with nothing in flight also fades by 1/e. See `PickClock`."""
FAILURE_PENALTY = 1.0
"""Latency (seconds) a failed or 5xx attempt counts as at least, so that a target failing fast
never looks like the fastest one to `p2c_ewma`."""
PEAK_WINDOW = 10.0
"""Seconds over which a pool remembers how many connections were busy at once."""
UNPROVEN_GRACE = 1.0
"""Seconds a new connection holds its connect slot at most while the target has not answered on
it: a first request the target is slow to answer (a long poll) frees the slot after this."""
KEEPALIVE_IDLE = 15.0
"""Seconds an idle upstream connection is kept: below the common backend defaults (nginx 75 s,
Node 5 s is the exception — a stale-connection retry covers it)."""
BUDGET_WINDOW = 10.0
BUDGET_FLOOR = 3
"""Retries always allowed per window, so that an upstream with little traffic can still retry."""

cdef double _EWMA_ALPHA = 0.3
cdef double _EWMA_DECAY = 5.0
cdef double _FAILURE_PENALTY = 1.0
cdef double _PEAK_WINDOW = 10.0
cdef double _UNPROVEN_GRACE = 1.0
cdef double _BUDGET_WINDOW = 10.0


cdef class Clock:
    """A coarse clock shared by a worker, ticked by its sweeper so that hot code reads a double
    instead of calling into the loop."""

    def __init__(self, double now):
        self.now = now


@cython.final
cdef class PickClock:
    """Counts the picks of one upstream in one worker: the time by which `p2c_ewma` fades the
    latency estimate of a target that is passed over (issue 9, item 11).

    Why picks and not only seconds: an estimate moves only when its target is picked, and p2c
    never picks the dearest of three targets when requests come one at a time (nothing is in
    flight to even the costs). One early slow answer (a first connection, a GC pause) then kept
    an equal target out: 60 sequential requests over three equal targets went 32 / 2 / 26. Fading
    by seconds (EWMA_DECAY) cannot bring it back at the rate requests come, since a time constant
    short enough would forget a slow target within one burst. So, like the peak EWMA of Finagle
    and Linkerd but with time counted in the upstream's own requests, an idle target's estimate
    fades by 1/e every IDLE_ROUNDS × (number of targets) picks. Once picked, its next sample
    moves on from the faded value: one good answer puts an equal target back in line, while a
    slow one gets a slow sample that sends it out again. The price is a probe share for a target
    that really is slow: with requests one at a time, about 2% of them for one 20 × slower than
    three others (IDLE_ROUNDS sets the balance: 6 gives 1.4% but leaves an equal target out for
    half as long again). With requests in flight the `active` counts decide, as before: a target
    with attempts in flight is not idle and does not fade by picks until they end."""

    def __init__(self, int targets, double idle_rounds=4.0):
        self.now = 0
        self.fade = 1.0 / (idle_rounds * targets)


cdef class TargetState:
    """What a worker knows about one target besides its connections: in-flight attempts, a
    latency EWMA, and the consecutive failures that feed outlier ejection. `begin()` once per
    attempt, then exactly one of `on_success`, `on_failure` or `on_cancel`. Balancers read
    `usable`, `active`, `ewma` and `weight`; nothing here allocates on success."""

    def __init__(self, int weight, clock):
        self.index = 0
        self.weight = weight
        self.usable = True
        self.errors = {}
        self.clock = clock
        self._clock = clock if isinstance(clock, Clock) else None
        self.kept = 1.0

    cdef double now(self) except? -1.0:
        if self._clock is not None:
            return self._clock.now
        return <double>self.clock.now

    cpdef double estimate(self) except? -1.0:
        """The latency EWMA as of now (0 before the first sample): faded by 1/e for every
        EWMA_DECAY seconds since it was last brought up to date and, with a `PickClock` and no
        attempt in flight, for every IDLE_ROUNDS rounds of picks since then."""
        cdef double ewma = self.ewma
        if ewma:
            ewma *= self.fading()
        return ewma

    cdef double fading(self) except? -1.0:
        cdef double idle = (self.now() - self.sampled_at) / _EWMA_DECAY
        cdef PickClock picks = self.picks
        if picks is not None and not self.active:
            idle += (picks.now - self.idle_from) * picks.fade
        return exp(-idle) if idle > 0.0 else 1.0

    cdef settle(self):
        """Keeps the faded estimate as the estimate, before `active` changes (with a
        `PickClock` only): fading by picks stops while attempts are in flight and starts again
        from when the last one ended."""
        cdef double f
        if self.ewma:
            f = self.fading()
            self.ewma *= f
            self.kept *= f
        self.sampled_at = self.now()
        self.idle_from = self.picks.now

    cpdef begin(self):
        """An attempt on this target starts: called once per attempt, before a pooled
        connection is taken or a new one opened."""
        if self.picks is not None and not self.active:
            self.settle()
        self.active += 1

    cpdef on_success(self, int status, double elapsed):
        """An exchange completed with `status` after `elapsed` seconds. A 5xx is a failure for
        outlier detection (DESIGN §8), though the exchange itself worked."""
        if self.active > 0:
            if self.picks is not None:
                self.settle()
            self.active -= 1
        self.completed += 1
        if status >= 500:
            self.failed += 1
            self.sample(elapsed if elapsed > _FAILURE_PENALTY else _FAILURE_PENALTY)
            if self.outlier is not None:
                self.outlier.failed(self)
        else:
            self.sample(elapsed)
            self.failures = 0

    cpdef on_failure(self, str kind):
        """An attempt failed: `connect_error` (a connect timeout included), `reset`, `timeout`,
        `protocol_error` or `status`; every kind counts towards ejection."""
        if self.active > 0:
            if self.picks is not None:
                self.settle()
            self.active -= 1
        self.failed += 1
        self.errors[kind] = self.errors.get(kind, 0) + 1
        cdef double penalty = self.ewma * 2
        self.sample(penalty if penalty > _FAILURE_PENALTY else _FAILURE_PENALTY)
        if self.outlier is not None:
            self.outlier.failed(self)

    cpdef on_cancel(self):
        """The attempt ended for a reason that says nothing about the target (the client went
        away, a pooled connection was stale)."""
        if self.active > 0:
            if self.picks is not None:
                self.settle()
            self.active -= 1

    cdef sample(self, double seconds):
        cdef double now = self.now()
        cdef double ewma, kept, f, weight
        if self.samples:
            ewma = self.ewma
            kept = self.kept
            if now != self.sampled_at:
                f = exp((self.sampled_at - now) / _EWMA_DECAY)
                ewma *= f
                kept *= f
            weight = 1.0 - kept
            if weight < _EWMA_ALPHA:
                weight = _EWMA_ALPHA
            self.ewma = ewma + weight * (seconds - ewma)
        else:
            self.ewma = seconds
        self.kept = 1.0
        self.samples += 1
        self.sampled_at = now


cdef class TargetPool(TargetState):
    """One target's keep-alive connections, and its attempt outcomes (TargetState's).

    How many idle connections are kept: at least `keepalive` (`max_idle`), and as many as were
    busy at once in the last PEAK_WINDOW seconds. nginx keeps exactly `keepalive` idle and closes
    the rest, which is cheap for nginx: it opens the next one in C. A connection opened from the
    event loop costs about 100,000 instructions here against nginx's 800 (bench/RESULTS.md), so
    with more requests in flight than `keepalive` (256 client connections, 32 kept) closing and
    reopening made a request cost 2.6 times as much. Keeping what recent load needed removes that
    churn; the sweeper still closes connections idle for KEEPALIVE_IDLE seconds, so a burst does
    not hold its connections after it.

    How many are opened at once (issue 14): at most `max_connecting` connections are being
    opened, and at most `max_connections` are open (0: no cap); a request that finds no idle
    connection and no free slot waits in a FIFO queue, and gets whichever comes first: a
    connection given back (handed over in `give`, never parked idle while someone waits) or a
    connect slot. Without this, 10,000 client connections sending at once through one worker
    opened a connection per request within one loop iteration: thousands of SYNs overflowed the
    target's accept queue, the dropped ones are resent after the kernel's initial 1 s
    retransmission timeout, and with a 1 s connect timeout each became a 504. A burst now opens
    `max_connecting` at a time and is otherwise served by the connections that come free.

    A connection is being opened until the target's first response byte on it, not only until
    the connect completes: the target's kernel completes a connect as soon as it queues the
    connection, before the server accepts it, so slots freed at the connect let a burst fill a
    slow server's accept queue all the same (32 SYNs dropped out of 1,000 requests through a
    backlog of 64 in the reproduction). Only an answer shows the server accepted it, so at most
    `max_connecting` of this worker's connections can sit in that queue. UNPROVEN_GRACE bounds
    how long a first request the target is slow to answer keeps its slot.

    The queue is a doubly linked list through the waiting requests themselves (`head`, `tail`,
    `Request.wait_prev/wait_next`): joining, leaving from anywhere (a client that goes away) and
    taking the oldest cost no allocation and no Python call."""

    def __init__(self, target, upstream, clock, loop):
        TargetState.__init__(self, target.weight, clock)
        self.target = target
        self.host = target.address.host
        self.port = target.address.port
        self.label = str(target.address)
        self.tls = {}
        if upstream.tls is not None:
            from fastgw.tls import upstream_context, upstream_server_hostname

            self.tls = {
                "ssl": upstream_context(upstream.tls),
                "server_hostname": upstream_server_hostname(upstream.tls, upstream.host_header, self.host),
            }
        self.idle = []
        self.busy = set()
        self.max_idle = upstream.keepalive
        self.connect_timeout = upstream.timeouts.connect
        self.read_timeout = upstream.timeouts.read
        self.idle_timeout = KEEPALIVE_IDLE
        self.loop = loop
        self.window_start = self.now()
        self.unproven = []
        self.max_connections = upstream.max_connections
        self.max_connecting = upstream.max_connecting
        self.queue_size = upstream.queue.size
        self.queue_timeout = upstream.queue.timeout if upstream.queue.timeout is not None else self.read_timeout

    cpdef object take(self):
        """An idle connection (the most recently used), or None."""
        cdef list idle = self.idle
        cdef UpstreamCore conn
        cdef set busy
        while idle:
            conn = <UpstreamCore?>idle.pop()
            if conn.closed:
                continue
            if conn.has_pending():
                conn.abort()
                continue
            conn.reused = True
            busy = self.busy
            busy.add(conn)
            if len(busy) > self.peak:
                self.peak = len(busy)
            return conn
        return None

    async def connect(self):
        """Opens a connection for the request `admit` gave a connect slot (ADMIT_OPEN). The
        connection keeps the slot until the target answers on it (`proven`); a failed connect
        frees it, and the caller reports the failure through `connect_failed`."""
        cdef set busy = self.busy
        try:
            async with _asyncio.timeout(self.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: _new_connection(self), self.host, self.port, **self.tls
                )
        finally:
            self.connecting -= 1
        conn.reused = False
        conn.fresh = True
        conn.last_active = self.now()
        self.unproven.append(conn)
        busy.add(conn)
        if len(busy) > self.peak:
            self.peak = len(busy)
        return conn

    cdef proven(self, UpstreamCore conn):
        """`conn` no longer holds a connect slot: the target answered on it, it closed, or
        UNPROVEN_GRACE passed."""
        conn.fresh = False
        self.unproven.remove(conn)
        if self.waiting:
            self.grant_slots()

    cpdef give(self, object conn):
        self.busy.discard(conn)
        if self.waiting and self.hand_off(<UpstreamCore>conn):
            return
        cdef Py_ssize_t idle = len(self.idle)
        if (idle < self.max_idle or idle < self.peak or idle < self.prev_peak) and not self.draining:
            conn.last_active = self.now()
            self.idle.append(conn)
        else:
            conn.closed = True
            conn.transport.close()

    cpdef forget(self, object conn):
        self.busy.discard(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass
        if (<UpstreamCore>conn).fresh:
            self.proven(<UpstreamCore>conn)
        elif self.waiting:
            # A connection fewer: under `max_connections`, room for a waiting request to open one.
            self.grant_slots()

    cdef bint may_open(self):
        cdef Py_ssize_t open_ = len(self.busy) + len(self.idle) + self.connecting
        return self.connecting + len(self.unproven) < self.max_connecting \
            and (self.max_connections == 0 or open_ < self.max_connections)

    cdef int admit(self, Request req) except -1:
        """`req` found no idle connection: ADMIT_OPEN (the slot is taken for it), ADMIT_WAIT (it
        joined the queue's tail) or ADMIT_FULL. Nobody opens past the queue: a slot is free only
        when nobody waits."""
        if not self.waiting and self.may_open():
            self.connecting += 1
            return ADMIT_OPEN
        if self.queue_size and self.waiting >= self.queue_size:
            self.queue_full += 1
            return ADMIT_FULL
        req.queued_at = _now()
        req.wait_prev = self.tail
        req.wait_next = None
        if self.tail is None:
            self.head = req
        else:
            self.tail.wait_next = req
        self.tail = req
        self.waiting += 1
        self.queued += 1
        return ADMIT_WAIT

    cdef unqueue(self, Request req):
        """Takes `req` out of the queue, wherever it is (no-op when it is not queued)."""
        if not req.queued_at:
            return
        if req.wait_prev is None:
            self.head = req.wait_next
        else:
            req.wait_prev.wait_next = req.wait_next
        if req.wait_next is None:
            self.tail = req.wait_prev
        else:
            req.wait_next.wait_prev = req.wait_prev
        req.wait_prev = None
        req.wait_next = None
        req.queued_at = 0.0
        self.waiting -= 1

    cdef Request pop_waiter(self):
        """The oldest waiting request, out of the queue (None when nobody waits)."""
        cdef Request req = self.head
        if req is not None:
            self.unqueue(req)
        return req

    cdef bint hand_off(self, UpstreamCore conn) except -1:
        """A connection given back goes straight to the oldest waiting request that can still
        take it (True), instead of the idle list."""
        cdef Request req
        cdef set busy = self.busy
        while self.waiting:
            req = self.pop_waiter()
            conn.reused = True
            busy.add(conn)
            if (<ClientCore>req.ex).waiter_ready(req, conn):
                if len(busy) > self.peak:
                    self.peak = len(busy)
                return True
            busy.discard(conn)
        return False

    cdef grant_slots(self):
        """Connect slots came free (a connect ended, a connection closed): the oldest waiting
        requests open connections of their own."""
        cdef Request req
        while self.waiting and self.may_open():
            req = self.pop_waiter()
            self.connecting += 1
            (<ClientCore>req.ex).waiter_ready(req, None)

    cdef connect_failed(self, int failure, str message):
        """A connect failed (`failure`, after the request it was for got it). While other
        connections work, the queue waits for them; with none busy and none connecting nothing
        can serve it, so every waiting request gets the failure at once, as it would have on a
        connect of its own (and goes to another target when its retry policy allows), rather
        than failing one connect timeout after another, `max_connecting` at a time."""
        cdef Request req
        if self.busy or self.connecting:
            self.grant_slots()
            return
        while self.waiting:
            req = self.pop_waiter()
            (<ClientCore>req.ex).attempt_failed(req, failure, message)

    def sweep(self, double now):
        """Closes idle connections before the upstream is likely to, so that a request is rarely
        sent on a connection the upstream is closing (the keep-alive race); times out silent
        busy ones; moves the peak window on."""
        if now - self.window_start >= _PEAK_WINDOW:
            self.prev_peak = self.peak
            self.peak = len(self.busy)
            self.window_start = now
        idle = self.idle
        if idle and now - idle[0].last_active > self.idle_timeout:
            keep = []
            for conn in idle:
                if now - conn.last_active > self.idle_timeout:
                    conn.closed = True
                    conn.transport.close()
                else:
                    keep.append(conn)
            self.idle = keep
        for conn in tuple(self.busy):
            if conn.busy and now - conn.last_active > self.read_timeout:
                conn.timed_out()
        cdef UpstreamCore conn_
        for conn_ in tuple(self.unproven):
            if now - conn_.last_active > _UNPROVEN_GRACE:
                self.proven(conn_)
        cdef Request req
        while self.head is not None and now - self.head.queued_at > self.queue_timeout:
            req = self.pop_waiter()
            self.queue_timeouts += 1
            (<ClientCore>req.ex).queue_refused(req, "no upstream connection came free in time")

    def close_all(self):
        self.draining = True
        for conn in self.idle:
            conn.closed = True
            conn.transport.close()
        self.idle = []


# The asyncio face of UpstreamCore, set by fastgw.upstream.connection (a Python subclass that
# adds asyncio.Protocol, which a cdef class cannot inherit here).
_connection_class = None


def set_connection_class(cls):
    global _connection_class
    _connection_class = cls


cdef object _new_connection(TargetPool pool):
    return _connection_class(pool)


# ---- balancers ----------------------------------------------------------------------------------

cdef class Balancer:
    """`pick(proto, req, exclude) -> target | None`: only `usable` targets (healthy and not
    ejected), never `exclude` (the target an attempt just failed on) unless it is the only usable
    one, None when no target is usable (the request gets 503)."""

    cpdef object pick(self, object proto, Request req, object exclude):
        raise NotImplementedError


@cython.final
cdef class Single(Balancer):
    """An upstream of one target, whatever its `balance`: nothing to choose."""

    def __init__(self, TargetState target):
        self.target = target

    cpdef object pick(self, object proto, Request req, object exclude):
        return self.target if self.target.usable else None


@cython.final
cdef class RoundRobin(Balancer):
    """Each usable target in turn; weights are refused by the config for this mode."""

    def __init__(self, targets):
        self.targets = list(targets)
        self.next = 0

    cpdef object pick(self, object proto, Request req, object exclude):
        cdef list targets = self.targets
        cdef Py_ssize_t n = len(targets), i = self.next, k
        cdef TargetState target, fallback = None
        for k in range(n):
            target = <TargetState>targets[i]
            i += 1
            if i == n:
                i = 0
            if target.usable:
                if target is not exclude:
                    self.next = i
                    return target
                fallback = target
        return fallback


@cython.final
cdef class Weighted(Balancer):
    """Smooth weighted round robin (nginx): over any span of sum(weights) picks each target gets
    exactly its weight, interleaved rather than in bursts. Unusable targets take no part, so the
    usable ones share the traffic in proportion to their weights."""

    def __init__(self, targets):
        self.targets = list(targets)

    cpdef object pick(self, object proto, Request req, object exclude):
        cdef TargetState target, best = None, fallback = None
        cdef long long total = 0
        for target in self.targets:
            if not target.usable:
                continue
            if target is exclude:
                fallback = target
                continue
            target.current += target.weight
            total += target.weight
            if best is None or target.current > best.current:
                best = target
        if best is None:
            return fallback
        best.current -= total
        return best


@cython.final
cdef class LeastConn(Balancer):
    """The usable target with the fewest attempts in flight in this worker, relative to its
    weight. Ties go round robin: the scan starts just after the last target chosen."""

    def __init__(self, targets):
        self.targets = list(targets)
        self.next = 0
        self.weighted = any(t.weight != 1 for t in self.targets)

    cpdef object pick(self, object proto, Request req, object exclude):
        cdef list targets = self.targets
        cdef Py_ssize_t n = len(targets), i = self.next, k
        cdef TargetState target, best = None, fallback = None
        cdef double score, best_score = 1e300
        for k in range(n):
            target = <TargetState>targets[i]
            i += 1
            if i == n:
                i = 0
            if not target.usable:
                continue
            if target is exclude:
                fallback = target
                continue
            score = (target.active + 1.0) / target.weight if self.weighted else <double>target.active
            if score < best_score:
                best = target
                best_score = score
        if best is None:
            return fallback
        self.next = best.index + 1 if best.index + 1 < n else 0
        return best


@cython.final
cdef class P2CEwma(Balancer):
    """Power of two choices: of two usable targets drawn at random, the one whose latency EWMA
    (faded while it is idle, by seconds and by this upstream's picks: `PickClock`) times its
    attempts in flight, over its weight, is lower. Random draws keep workers from herding onto
    the same target."""

    def __init__(self, targets, clock, rng=None, double idle_rounds=4.0):
        self.targets = list(targets)
        self.random = (rng or _random.Random()).random
        self.picks = PickClock(len(self.targets), idle_rounds)
        for target in self.targets:
            (<TargetState>target).picks = self.picks

    cdef double cost(self, TargetState target) except? -1.0:
        return target.estimate() * (target.active + 1) / target.weight

    cpdef object pick(self, object proto, Request req, object exclude):
        cdef list targets = self.targets
        cdef Py_ssize_t n = len(targets), i, j
        cdef TargetState a, b
        rand = self.random
        self.picks.now += 1
        if n > 1:
            i = <Py_ssize_t>(<double>rand() * n)
            j = <Py_ssize_t>(<double>rand() * (n - 1))
            if j >= i:
                j += 1
            a = <TargetState>targets[i]
            b = <TargetState>targets[j]
            if a.usable and b.usable and a is not exclude and b is not exclude:
                return a if self.cost(a) <= self.cost(b) else b
        cdef list candidates = [t for t in targets if (<TargetState>t).usable and t is not exclude]
        if not candidates:
            return exclude if exclude is not None and (<TargetState>exclude).usable else None
        if len(candidates) == 1:
            return candidates[0]
        i = <Py_ssize_t>(<double>rand() * len(candidates))
        j = <Py_ssize_t>(<double>rand() * (len(candidates) - 1))
        if j >= i:
            j += 1
        a = <TargetState>candidates[i]
        b = <TargetState>candidates[j]
        return a if self.cost(a) <= self.cost(b) else b


@cython.final
cdef class ConsistentHash(Balancer):
    """A ketama-style ring: each target owns `vnodes` × weight points placed by hashing its
    address, so points depend on the target alone and adding or removing one target moves only
    the keys it gains or loses (about 1/N). A key goes to the owner of the first point at or after
    its hash; when that target is not usable, to the next distinct one along the ring. Requests
    without the key (no such header or cookie) are spread round robin."""

    def __init__(self, targets, points, owners, RequestKey key not None, hash64):
        self.targets = list(targets)
        self.points = list(points)
        self.owners = list(owners)
        self.key = key
        self.fallback = RoundRobin(self.targets)
        self.hash64 = hash64

    cpdef object pick(self, object proto, Request req, object exclude):
        cdef bytes key = self.key.of(req)
        if key is None:
            return self.fallback.pick(proto, req, exclude)
        return self.owner(self.hash64(key), exclude)

    def owner(self, point, exclude):
        cdef list owners = self.owners
        cdef Py_ssize_t m = len(owners), i = _bisect(self.points, point), k
        cdef TargetState target, fallback = None
        for k in range(m):
            if i >= m:
                i = 0
            target = <TargetState>owners[i]
            if target.usable:
                if target is not exclude:
                    return target
                fallback = target
            i += 1
        return fallback


# ---- the retry budget ------------------------------------------------------------------------------

@cython.final
cdef class RetryBudget:
    """Retries over requests in the last BUDGET_WINDOW seconds, per worker and upstream.

    Counts are kept for the current and the previous window, and the previous one is weighed by
    how much of it still lies within the last BUDGET_WINDOW seconds (the sliding-window estimate
    of Pingora's `Rate`), so the budget does not reset all at once on a window boundary."""

    def __init__(self, double ratio, clock, int floor=BUDGET_FLOOR):
        self.ratio = ratio
        self.floor = floor
        self.clock = clock
        self.start = clock.now

    cpdef on_request(self):
        cdef double now = self.clock.now
        if now - self.start >= _BUDGET_WINDOW:
            self.roll(now)
        self.requests += 1

    cpdef bint try_acquire(self) except -1:
        """Takes one retry if the budget has one left."""
        cdef double now = self.clock.now
        if now - self.start >= _BUDGET_WINDOW:
            self.roll(now)
        cdef double weight = 1.0 - (now - self.start) / _BUDGET_WINDOW
        cdef double retries = self.prev_retries * weight + self.retries
        cdef double allowed = self.ratio * (self.prev_requests * weight + self.requests)
        if retries + 1 > (allowed if allowed > self.floor else self.floor):
            return False
        self.retries += 1
        return True

    cdef roll(self, double now):
        cdef long long windows = <long long>((now - self.start) // _BUDGET_WINDOW)
        if windows == 1:
            self.prev_requests = self.requests
            self.prev_retries = self.retries
        else:
            self.prev_requests = 0
            self.prev_retries = 0
        self.requests = 0
        self.retries = 0
        self.start += windows * _BUDGET_WINDOW


# ---- the group ------------------------------------------------------------------------------------

cdef class TargetGroup:
    """The targets of one upstream as a worker's request path sees them: which one to pick,
    whether a failed attempt may be retried, and which targets are usable right now. `tick` runs
    from the worker's sweeper every 0.1 s: it applies active-check results and ended ejections,
    and publishes what the worker sees."""

    def __init__(self, upstream, pools, labels, clock, view=None, rng=None):
        from fastgw.upstream.balancer import make_balancer
        from fastgw.upstream.outlier import OutlierDetector
        from fastgw.upstream.retry import RetryPolicy

        self.name = upstream.name
        self.balance = upstream.balance
        self.pools = list(pools)
        for index, pool in enumerate(self.pools):
            pool.index = index
        self.outlier = OutlierDetector(upstream.outlier, self.pools, clock) if upstream.outlier is not None else None
        for pool in self.pools:
            pool.outlier = self.outlier
        self.retry = RetryPolicy(upstream.retries, clock)
        self.budget = self.retry.budget
        self.retry_statuses = self.retry.statuses
        self.balancer = make_balancer(upstream, self.pools, labels, clock, rng)
        self.view = view
        self.default_host_line = b""
        if view is not None:
            # Before the worker serves: a target the checker already holds unhealthy (kept over a
            # reload) must not get requests until the first tick.
            self.tick(clock.now)

    def pick(self, proto, Request req, exclude):
        """The target for the next attempt of `req`, other than `exclude` unless it is the only
        usable one; None when no target is usable."""
        return self.balancer.pick(proto, req, exclude)

    def on_request(self):
        """Once per request routed to this upstream: the retry budget's denominator."""
        self.budget.on_request()

    def tick(self, double now):
        """Applies the shared health states and ended ejections to `usable`, then publishes this
        worker's view of the targets. A target marked unhealthy by the checker stops being picked
        here, so within a tick (0.1 s) of the checker's verdict."""
        from fastgw.upstream.shared import UNHEALTHY

        view = self.view
        states = view.states if view is not None else None
        outlier = self.outlier
        for pool in self.pools:
            usable = outlier is None or not outlier.restore(pool, now)
            if states is not None and states[view.health_index[pool.index]] == UNHEALTHY:
                usable = False
            pool.usable = usable
        if view is not None:
            view.publish(self.pools, now)

