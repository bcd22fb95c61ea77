# The filter contract (see filter.pxd) and the adapter that lets a plain Python object be a filter.

import inspect as _inspect

# The contract's constants for Python code (fastgw.pipeline re-exports them as enums).
FILTER_RESULTS = {"CONTINUE": CONTINUE, "RESPONDED": RESPONDED, "SUSPENDED": SUSPENDED}
REQUEST_PHASES = {"ACCESS": RQ_ACCESS, "CORS": RQ_CORS, "AUTH": RQ_AUTH, "RATE_LIMIT": RQ_RATE_LIMIT,
                  "CACHE": RQ_CACHE, "TRANSFORM": RQ_TRANSFORM, "RESPOND": RQ_RESPOND}
RESPONSE_PHASES = {"TRANSFORM": RS_TRANSFORM, "HIDE": RS_HIDE, "COMPRESS": RS_COMPRESS, "STORE": RS_STORE}


cdef class Filter:
    """Base of compiled filters: override the cdef methods of the phases the filter takes part
    in and set `request_phase` / `response_phase`."""

    cdef int on_request(self, Request req) except -1:
        return CONTINUE

    cdef int on_response(self, Request req, ResponseHead head) except -1:
        return 0

    cdef bytes on_body(self, Request req, bytes data):
        return data

    cdef bytes on_end(self, Request req):
        return b""

    @property
    def name(self):
        return type(self.target if self.target is not None else self).__name__

    def run_request(self, Request req not None):
        """Runs the request part outside an exchange (tests, embedding): None when the request
        goes on, else the Reply that answers it."""
        return req.reply if self.on_request(req) == RESPONDED else None


cdef int python_answer(Request req, object result, str returned_by) except -1:
    """What a request filter's Python code answered, as the chain's result: None goes on, a Reply
    answers (req.reply), an awaitable suspends the request until it is done. One reading for
    PyFilter and for the compiled filters that call Python (an authenticator, a `require` check);
    `returned_by` names the callable in the TypeError for anything else."""
    if result is None:
        return CONTINUE
    if type(result) is Reply:
        req.reply = <Reply>result
        return RESPONDED
    if _inspect.isawaitable(result):
        (<ClientCore>req.ex).suspend_on(req, result)
        return SUSPENDED
    raise TypeError(f"{returned_by} returned {type(result).__name__}: expected None, a Reply or an awaitable")


@cython.final
cdef class PyFilter(Filter):
    """A Python object as a filter (`fastgw.pipeline.RequestFilter` / `ResponseFilter`).

    `on_request(req)` returns None (continue), a Reply (answer), or an awaitable resolving to
    either: the request is then suspended, the awaitable runs as a task, and the chain goes on
    when it is done. `on_response(req, head)` edits the head; `on_body(req, data) -> bytes` and
    `on_end(req) -> bytes` see the body once `head.stream_through(self)` asked for it."""

    def __init__(self, obj):
        self.target = obj
        self.request_phase = getattr(obj, "request_phase", RQ_NONE) or RQ_NONE
        self.response_phase = getattr(obj, "response_phase", RS_NONE) or RS_NONE
        self._on_request = getattr(obj, "on_request", None) if self.request_phase else None
        self._returned_by = f"{type(obj).__name__}.on_request"
        self._on_response = getattr(obj, "on_response", None) if self.response_phase else None
        self._on_body = getattr(obj, "on_body", None)
        self._on_end = getattr(obj, "on_end", None)
        if self.request_phase and self._on_request is None:
            raise TypeError(f"{type(obj).__name__} has a request_phase but no on_request")
        if self.response_phase and self._on_response is None:
            raise TypeError(f"{type(obj).__name__} has a response_phase but no on_response")

    cdef int on_request(self, Request req) except -1:
        return python_answer(req, self._on_request(req), self._returned_by)

    cdef int on_response(self, Request req, ResponseHead head) except -1:
        self._on_response(req, head)
        return 0

    cdef bytes on_body(self, Request req, bytes data):
        if self._on_body is None:
            return data
        return self._on_body(req, data)

    cdef bytes on_end(self, Request req):
        if self._on_end is None:
            return b""
        return self._on_end(req)


cpdef Filter as_filter(object obj):
    """`obj` itself if it is a compiled Filter, else a PyFilter around it."""
    if isinstance(obj, Filter):
        return <Filter>obj
    return PyFilter(obj)
