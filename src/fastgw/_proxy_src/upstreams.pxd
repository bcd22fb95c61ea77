# The upstream side of a request's way, compiled (issue 14): what a worker knows about each
# target (TargetState: in-flight attempts, latency EWMA, failures for outlier ejection), its
# keep-alive pool (TargetPool), the balancers that pick a target, the retry budget, and the group
# that holds them (TargetGroup). The exchange calls them as C calls; Python code (health checks,
# outlier ejection, the admin API, the internal client) uses the same objects through their
# public attributes and cpdef methods.
#
# Call order per attempt: group.budget.on_request() once per request; pool = group.balancer.pick
# (proto, req, exclude); pool.begin(); pool.take(), else pool.admit(req): ADMIT_OPEN (the request
# opens a connection: pool.connect(), and pool.connect_failed() if that fails), ADMIT_WAIT (queued:
# the pool calls the client's waiter_ready(req, conn) when a connection or a connect slot is free,
# or queue_refused / attempt_failed), or ADMIT_FULL; then exactly one of pool.on_success(status,
# elapsed), pool.on_failure(kind), pool.on_cancel(); the connection goes back with pool.give(conn)
# (or pool.forget(conn) when it closed). A request that ends while queued leaves the queue through
# pool.unqueue(req) (the exchange's log step).

cimport cython


cdef enum Admit:
    ADMIT_OPEN = 0       # a connect slot is the request's: it opens a connection
    ADMIT_WAIT = 1       # queued until a connection or a connect slot is free
    ADMIT_FULL = 2       # the queue is full: 503


cdef class Clock:
    cdef public double now


@cython.final
cdef class PickClock:
    cdef public long long now
    cdef public double fade


cdef class TargetState:
    cdef public int index
    cdef public int weight
    cdef public bint usable
    cdef public long long current
    cdef public int active
    cdef public double ewma
    cdef public long long samples
    cdef public double sampled_at
    cdef public int failures
    cdef public double ejected_until
    cdef public int ejections
    cdef public double returned_at
    cdef public long long ejected_total
    cdef public long long completed
    cdef public long long failed
    cdef public dict errors
    cdef public object clock
    cdef Clock _clock                # `clock` when it is a Clock: read without a Python lookup
    cdef public object outlier
    cdef public PickClock picks
    cdef public long long idle_from
    cdef public double kept

    cdef double now(self) except? -1.0
    cdef double fading(self) except? -1.0
    cdef settle(self)
    cdef sample(self, double seconds)
    cpdef begin(self)
    cpdef on_success(self, int status, double elapsed)
    cpdef on_failure(self, str kind)
    cpdef on_cancel(self)
    cpdef double estimate(self) except? -1.0


cdef class TargetPool(TargetState):
    cdef public object target
    cdef public str host
    cdef public int port
    cdef public str label
    cdef public dict tls                    # create_connection arguments for an upstream with `tls`
    cdef public list idle
    cdef public set busy
    cdef public int max_idle
    cdef public double connect_timeout
    cdef public double read_timeout
    cdef public double idle_timeout
    cdef public object loop
    cdef public bint draining
    cdef public int peak
    cdef public int prev_peak
    cdef public double window_start
    cdef public int max_connections         # open and opening connections at most (0: no cap)
    cdef public int max_connecting          # connections being opened at most: connecting + unproven
    cdef public int queue_size              # requests waiting at most (0: no bound)
    cdef public double queue_timeout
    cdef public int connecting              # connects in progress
    cdef public list unproven               # connected, no response byte yet (UpstreamCore.fresh)
    cdef public int waiting                 # requests in the queue
    cdef Request head                       # the queue, oldest first, linked through the requests
    cdef Request tail
    cdef public long long queued            # requests that had to wait (counters for metrics)
    cdef public long long queue_full
    cdef public long long queue_timeouts

    cpdef object take(self)
    cpdef give(self, object conn)
    cpdef forget(self, object conn)
    cdef bint may_open(self)
    cdef proven(self, UpstreamCore conn)
    cdef int admit(self, Request req) except -1
    cdef Request pop_waiter(self)
    cdef unqueue(self, Request req)
    cdef bint hand_off(self, UpstreamCore conn) except -1
    cdef grant_slots(self)
    cdef connect_failed(self, int failure, str message)


cdef class Balancer:
    cpdef object pick(self, object proto, Request req, object exclude)


@cython.final
cdef class Single(Balancer):
    cdef TargetState target


@cython.final
cdef class RoundRobin(Balancer):
    cdef readonly list targets
    cdef Py_ssize_t next


@cython.final
cdef class Weighted(Balancer):
    cdef readonly list targets


@cython.final
cdef class LeastConn(Balancer):
    cdef readonly list targets
    cdef Py_ssize_t next
    cdef bint weighted


@cython.final
cdef class P2CEwma(Balancer):
    cdef readonly list targets
    cdef object random
    cdef PickClock picks
    cdef double cost(self, TargetState target) except? -1.0


@cython.final
cdef class ConsistentHash(Balancer):
    cdef readonly list targets
    cdef list points
    cdef list owners
    cdef RequestKey key
    cdef RoundRobin fallback
    cdef object hash64


@cython.final
cdef class RetryBudget:
    cdef public double ratio
    cdef public int floor
    cdef public object clock
    cdef double start
    cdef long long requests
    cdef long long retries
    cdef long long prev_requests
    cdef long long prev_retries

    cpdef on_request(self)
    cpdef bint try_acquire(self) except -1
    cdef roll(self, double now)


cdef class TargetGroup:
    cdef public str name
    cdef public str balance
    cdef public list pools
    cdef public Balancer balancer
    cdef public object retry                # RetryPolicy (fastgw.upstream.retry)
    cdef public RetryBudget budget
    cdef public object retry_statuses       # frozenset of statuses worth a retry, or None
    cdef public object outlier              # OutlierDetector, or None (outlier: off)
    cdef public object view                 # GroupView of the shared health table, or None
    cdef public bytes default_host_line
