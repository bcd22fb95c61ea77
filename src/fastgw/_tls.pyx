# cython: language_level=3
"""TLS termination, compiled: the server contexts of TLS listeners and the TLS layer of each
client connection, on OpenSSL directly.

Why not uvloop's `ssl=`: its SSL protocol drives Python's `ssl.SSLObject`, so every handshake
step, read and write of a connection passes through Python methods of `ssl.py`, and every "want
more bytes" is a raised and caught `SSLWantReadError`. A new TLS connection then cost about 120,000
instructions of Python around OpenSSL's work, 1.6 times nginx's CPU per resumed connection. Here
the same memory-BIO design (OpenSSL reads ciphertext from one buffer and writes to another; the
loop's TCP transport moves the bytes) runs in C: one `SSL_*` call per step and no exception.

A `TlsConnection` is both the protocol of the TCP connection and the transport of the HTTP
protocol above it (`ClientProtocol`), which it creates once the handshake is done. Nothing here
implements cryptography or TLS: OpenSSL does (the same libssl Python's `ssl` module uses).
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint64_t
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

__all__ = ["ServerContext", "TlsConnection", "TlsListener"]


cdef extern from "openssl/ssl.h" nogil:
    ctypedef struct SSL_CTX
    ctypedef struct SSL
    ctypedef struct SSL_METHOD
    ctypedef struct BIO
    ctypedef struct BIO_METHOD
    ctypedef struct X509
    cdef struct stack_st_X509_NAME

    int TLS1_2_VERSION
    int TLS1_3_VERSION
    int SSL_FILETYPE_PEM
    int SSL_ERROR_WANT_READ
    int SSL_ERROR_ZERO_RETURN
    int SSL_VERIFY_PEER
    int SSL_VERIFY_FAIL_IF_NO_PEER_CERT
    int SSL_TLSEXT_ERR_OK
    int SSL_TLSEXT_ERR_NOACK
    int OPENSSL_NPN_NEGOTIATED
    int TLSEXT_NAMETYPE_host_name
    uint64_t SSL_OP_ALL
    uint64_t SSL_OP_NO_COMPRESSION
    uint64_t SSL_OP_NO_RENEGOTIATION
    uint64_t SSL_OP_CIPHER_SERVER_PREFERENCE
    long SSL_MODE_RELEASE_BUFFERS
    long X509_V_OK

    const SSL_METHOD *TLS_server_method()
    SSL_CTX *SSL_CTX_new(const SSL_METHOD *meth)
    void SSL_CTX_free(SSL_CTX *ctx)
    int SSL_CTX_use_certificate_chain_file(SSL_CTX *ctx, const char *file)
    int SSL_CTX_use_PrivateKey_file(SSL_CTX *ctx, const char *file, int type)
    int SSL_CTX_check_private_key(const SSL_CTX *ctx)
    int SSL_CTX_set_cipher_list(SSL_CTX *ctx, const char *s)
    int SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version)
    uint64_t SSL_CTX_set_options(SSL_CTX *ctx, uint64_t op)
    long SSL_CTX_set_mode(SSL_CTX *ctx, long mode)
    int SSL_CTX_set_session_id_context(SSL_CTX *ctx, const unsigned char *sid_ctx, unsigned int sid_ctx_len)
    int SSL_CTX_load_verify_locations(SSL_CTX *ctx, const char *CAfile, const char *CApath)
    stack_st_X509_NAME *SSL_load_client_CA_file(const char *file)
    void SSL_CTX_set_client_CA_list(SSL_CTX *ctx, stack_st_X509_NAME *names)
    void SSL_CTX_set_verify(SSL_CTX *ctx, int mode, void *callback)
    void SSL_CTX_set_alpn_select_cb(
        SSL_CTX *ctx,
        int (*cb)(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *inp,
                  unsigned int inlen, void *arg) noexcept,
        void *arg)
    int SSL_select_next_proto(unsigned char **out, unsigned char *outlen, const unsigned char *server,
                              unsigned int server_len, const unsigned char *client, unsigned int client_len)
    long SSL_CTX_set_tlsext_servername_callback(SSL_CTX *ctx, int (*cb)(SSL *ssl, int *alert, void *arg) noexcept)
    long SSL_CTX_set_tlsext_servername_arg(SSL_CTX *ctx, void *arg)
    const char *SSL_get_servername(const SSL *s, const int type)
    SSL_CTX *SSL_set_SSL_CTX(SSL *ssl, SSL_CTX *ctx)

    SSL *SSL_new(SSL_CTX *ctx)
    void SSL_free(SSL *ssl)
    void SSL_set_bio(SSL *ssl, BIO *rbio, BIO *wbio)
    void SSL_set_accept_state(SSL *ssl)
    int SSL_do_handshake(SSL *ssl)
    int SSL_read(SSL *ssl, void *buf, int num)
    int SSL_write(SSL *ssl, const void *buf, int num)
    int SSL_shutdown(SSL *ssl)
    int SSL_get_error(const SSL *ssl, int ret)
    X509 *SSL_get0_peer_certificate(const SSL *ssl)
    int SSL_session_reused(const SSL *ssl)
    long SSL_get_verify_result(const SSL *ssl)

cdef extern from "openssl/bio.h" nogil:
    BIO *BIO_new(const BIO_METHOD *type)
    const BIO_METHOD *BIO_s_mem()
    int BIO_write(BIO *b, const void *data, int dlen)
    int BIO_read(BIO *b, void *data, int dlen)
    size_t BIO_ctrl_pending(BIO *b)
    long BIO_set_mem_eof_return(BIO *b, int v)

cdef extern from "openssl/err.h" nogil:
    unsigned long ERR_peek_last_error()
    void ERR_clear_error()
    const char *ERR_reason_error_string(unsigned long e)

cdef extern from "openssl/x509.h" nogil:
    int i2d_X509(X509 *x, unsigned char **out)


# READ_CHUNK: plaintext handed to the HTTP protocol at most per call (OpenSSL's records are 16 KiB).
# COALESCE: `writelines` parts up to this many bytes in all go out in one TLS record, as nginx's
# 16 KiB `ssl_buffer_size` does: a response head and a small body are one record, not two.
cdef enum:
    READ_CHUNK = 65536
    COALESCE = 16384

cdef const unsigned char *ALPN = b"\x08http/1.1"
cdef const unsigned char *SESSION_CONTEXT = b"fastgw"

_VERSIONS = {"1.2": TLS1_2_VERSION, "1.3": TLS1_3_VERSION}


cdef str _openssl_reason():
    """The reason of the last OpenSSL error in words (and the error queue emptied)."""
    cdef unsigned long code = ERR_peek_last_error()
    cdef const char *reason = ERR_reason_error_string(code) if code else NULL
    ERR_clear_error()
    return reason.decode("ascii", "replace") if reason is not NULL else "unknown OpenSSL error"


cdef inline double _monotonic() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef int _select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *inp,
                      unsigned int inlen, void *arg) noexcept nogil:
    """`http/1.1` when the client offers it; no ALPN in the reply otherwise (as the client did
    not ask for it, or asked only for protocols spoken elsewhere)."""
    cdef unsigned char *chosen
    if SSL_select_next_proto(&chosen, outlen, ALPN, 9, inp, inlen) != OPENSSL_NPN_NEGOTIATED:
        return SSL_TLSEXT_ERR_NOACK
    out[0] = chosen
    return SSL_TLSEXT_ERR_OK


cdef int _select_certificate(SSL *ssl, int *alert, void *arg) noexcept nogil:
    """SNI: switches the connection to the certificate whose names match (exact, then one `*.`
    label); the default certificate otherwise."""
    cdef const char *raw = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)
    if raw is not NULL:
        with gil:
            _switch_certificate(ssl, raw, <ServerContext>arg)
    return SSL_TLSEXT_ERR_OK


cdef void _switch_certificate(SSL *ssl, const char *raw, ServerContext context) noexcept:
    name = raw.decode("ascii", "replace").lower().rstrip(".")
    cdef _Certificate chosen = context.exact.get(name)
    if chosen is None and "." in name:
        chosen = context.wildcard.get(name.split(".", 1)[1])
    if chosen is not None:
        SSL_set_SSL_CTX(ssl, chosen.ctx)


@cython.final
cdef class _Certificate:
    """One certificate chain and key in an OpenSSL context of their own, with the listener's
    protocol settings (OpenSSL chooses the certificate by context)."""
    cdef SSL_CTX *ctx

    def __cinit__(self, str cert, str key, str min_version, str ciphers, client_ca, str client_cert):
        self.ctx = SSL_CTX_new(TLS_server_method())
        if self.ctx is NULL:
            raise MemoryError("SSL_CTX_new")
        cdef SSL_CTX *ctx = self.ctx
        SSL_CTX_set_options(ctx, SSL_OP_ALL | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION
                            | SSL_OP_CIPHER_SERVER_PREFERENCE)
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS)
        # Sessions of client-certificate connections resume only within this context id.
        SSL_CTX_set_session_id_context(ctx, SESSION_CONTEXT, 6)
        SSL_CTX_set_min_proto_version(ctx, _VERSIONS[min_version])
        if not SSL_CTX_set_cipher_list(ctx, ciphers.encode()):
            raise ValueError(f"no usable cipher in {ciphers!r} ({_openssl_reason()})")
        SSL_CTX_set_alpn_select_cb(ctx, _select_alpn, NULL)
        cdef bytes path = cert.encode()
        if not SSL_CTX_use_certificate_chain_file(ctx, path):
            raise ValueError(f"{cert} holds no usable PEM certificate chain ({_openssl_reason()})")
        path = key.encode()
        if not SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) or not SSL_CTX_check_private_key(ctx):
            reason = _openssl_reason()
            if "mismatch" in reason:
                raise ValueError(f"the key in {key} does not match the certificate in {cert}")
            raise ValueError(f"{key} holds no usable private key for {cert} ({reason})")
        cdef stack_st_X509_NAME *names
        if client_ca is not None and client_cert != "off":
            path = (<str>client_ca).encode()
            if not SSL_CTX_load_verify_locations(ctx, path, NULL):
                raise ValueError(f"{client_ca} holds no usable CA certificate ({_openssl_reason()})")
            names = SSL_load_client_CA_file(path)
            if names is not NULL:
                SSL_CTX_set_client_CA_list(ctx, names)  # the names a client picks its certificate by
            SSL_CTX_set_verify(
                ctx, SSL_VERIFY_PEER | (SSL_VERIFY_FAIL_IF_NO_PEER_CERT if client_cert == "required" else 0), NULL
            )
        ERR_clear_error()

    def __dealloc__(self):
        if self.ctx is not NULL:
            SSL_CTX_free(self.ctx)


@cython.final
cdef class ServerContext:
    """The TLS context of one listener: `certificates` ((cert, key, names) each; names empty: the
    certificate's own), the first being the default for a missing or unknown SNI name.

    Built once per generation in the master, before its workers fork: OpenSSL makes the session
    ticket keys with the context, so every worker of a generation shares them, and a session
    resumes on whichever worker SO_REUSEPORT gives the next connection. Raises ValueError saying
    in words what is wrong with a file."""
    cdef _Certificate default
    cdef list certificates
    cdef dict exact
    cdef dict wildcard

    def __init__(self, certificates, str min_version="1.2", str ciphers="DEFAULT", client_ca=None,
                 str client_cert="off"):
        if min_version not in _VERSIONS:
            raise ValueError(f"min_version must be one of {', '.join(_VERSIONS)}")
        self.certificates = []
        self.exact = {}
        self.wildcard = {}
        for cert, key, names in certificates:
            item = _Certificate(cert, key, min_version, ciphers, client_ca, client_cert)
            self.certificates.append(item)
            for name in names:
                table, key_name = (self.wildcard, name[2:]) if name.startswith("*.") else (self.exact, name)
                table.setdefault(key_name, item)
        if not self.certificates:
            raise ValueError("a TLS listener needs a certificate")
        self.default = self.certificates[0]
        if len(self.certificates) > 1:
            SSL_CTX_set_tlsext_servername_callback(self.default.ctx, _select_certificate)
            SSL_CTX_set_tlsext_servername_arg(self.default.ctx, <void *>self)


@cython.final
cdef class TlsListener:
    """A TLS listener in a worker: the protocol factory of its server (one `TlsConnection` per
    accepted socket, whose HTTP protocol `protocol_factory()` makes once the handshake is done),
    and the handshakes in flight, which `expire` ends after `handshake_timeout` and which a
    draining worker waits for (`handshaking`): a client mid-handshake would otherwise see a reset."""
    cdef ServerContext context
    cdef object protocol_factory
    cdef object loop
    cdef readonly double handshake_timeout
    cdef dict pending          # TlsConnection -> accept time (monotonic)
    cdef object count          # count(i): one more of counter i (the worker's metrics block)
    cdef Py_ssize_t at_handshakes, at_resumed, at_errors, at_timeouts

    def __init__(self, ServerContext context, protocol_factory, loop, double handshake_timeout, count, counters):
        """`count` and `counters`: where handshakes, resumed sessions, failed handshakes and
        handshake timeouts are counted (`count(counters[k])`, once per handshake)."""
        self.context = context
        self.protocol_factory = protocol_factory
        self.loop = loop
        self.handshake_timeout = handshake_timeout
        self.pending = {}
        self.count = count
        self.at_handshakes, self.at_resumed, self.at_errors, self.at_timeouts = counters

    cdef void counted(self, Py_ssize_t at) noexcept:
        try:
            self.count(at)
        except Exception:
            pass  # a counter is never worth a connection

    def __call__(self):
        return TlsConnection(self)

    @property
    def handshaking(self) -> int:
        return len(self.pending)

    def expire(self):
        """Aborts the connections whose handshake has taken longer than `handshake_timeout`."""
        cdef double limit = _monotonic() - self.handshake_timeout
        cdef TlsConnection conn
        for conn, at in list(self.pending.items()):
            if <double>at < limit:
                del self.pending[conn]
                self.counted(self.at_timeouts)
                conn.abort()


@cython.final
cdef class TlsConnection:
    """One client connection's TLS: the protocol of its TCP transport and the transport of its
    HTTP protocol (the asyncio calls of each are disjoint). Writes are encrypted and handed to
    the TCP transport at once; reads are decrypted and handed up as they come, unless the HTTP
    protocol paused reading, in which case they wait in OpenSSL's buffer."""
    cdef TlsListener listener
    cdef SSL *ssl
    cdef BIO *rbio                 # ciphertext from the client (owned by ssl)
    cdef BIO *wbio                 # ciphertext to the client (owned by ssl)
    cdef object tcp                # the TCP transport
    cdef object app                # the HTTP protocol, from the end of the handshake on
    cdef bint closing
    cdef bint paused               # the HTTP protocol paused reading
    cdef bint read_scheduled
    cdef bint eof                  # the client ended its requests (close_notify or TCP EOF)
    cdef object __weakref__

    def __cinit__(self, TlsListener listener):
        self.listener = listener
        self.ssl = SSL_new(listener.context.default.ctx)
        if self.ssl is NULL:
            raise MemoryError("SSL_new")
        self.rbio = BIO_new(BIO_s_mem())
        self.wbio = BIO_new(BIO_s_mem())
        # An empty read buffer means "wait for more", not end of file.
        BIO_set_mem_eof_return(self.rbio, -1)
        BIO_set_mem_eof_return(self.wbio, -1)
        SSL_set_bio(self.ssl, self.rbio, self.wbio)
        SSL_set_accept_state(self.ssl)

    def __dealloc__(self):
        if self.ssl is not NULL:
            SSL_free(self.ssl)

    cdef void release(self):
        if self.ssl is not NULL:
            SSL_free(self.ssl)
            self.ssl = NULL

    # the TCP transport's protocol

    def connection_made(self, transport):
        self.tcp = transport
        self.listener.pending[self] = _monotonic()

    def data_received(self, bytes data):
        if self.ssl is NULL or self.closing:
            return
        BIO_write(self.rbio, PyBytes_AS_STRING(data), len(data))
        if self.app is None and not self.handshake():
            return
        if not self.paused:
            self.read()

    def eof_received(self):
        """The client shut its sending side without a TLS close (or after one): the HTTP
        protocol decides, as it does on a plain connection."""
        if self.app is None:
            return False
        self.end_of_requests()
        return True

    def connection_lost(self, exc):
        self.closing = True
        self.listener.pending.pop(self, None)
        self.release()
        self.tcp = None
        app = self.app
        if app is not None:
            self.app = None
            app.connection_lost(exc)

    def pause_writing(self):
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self):
        if self.app is not None:
            self.app.resume_writing()

    # OpenSSL steps

    cdef bint handshake(self) except -1:
        """One handshake step on what arrived; True once done (the HTTP protocol is then made
        and told of the connection)."""
        ERR_clear_error()  # see read()
        cdef int rc = SSL_do_handshake(self.ssl)
        if rc != 1:
            if SSL_get_error(self.ssl, rc) == SSL_ERROR_WANT_READ:
                self.flush()
                return False
            self.fail()
            return False
        cdef TlsListener listener = self.listener
        listener.pending.pop(self, None)
        listener.counted(listener.at_handshakes)
        if SSL_session_reused(self.ssl):
            listener.counted(listener.at_resumed)
        self.flush()  # the server's Finished or its session tickets
        app = listener.protocol_factory()
        self.app = app
        app.connection_made(self)
        return not self.closing

    cdef int read(self) except -1:
        """Decrypts what OpenSSL holds and hands it up, in chunks of up to READ_CHUNK, until
        nothing is left, the HTTP protocol pauses reading, or the connection closes."""
        cdef char buf[READ_CHUNK]
        cdef int n = 0
        cdef int err
        cdef Py_ssize_t filled
        ERR_clear_error()  # SSL_get_error reads the thread's queue: the stdlib's TLS shares it
        while not self.paused and not self.closing and self.ssl is not NULL:
            filled = 0
            while filled < READ_CHUNK:
                n = SSL_read(self.ssl, buf + filled, <int>(READ_CHUNK - filled))
                if n <= 0:
                    break
                filled += n
            if n <= 0:
                err = SSL_get_error(self.ssl, n)  # before the HTTP protocol runs more SSL calls
            if filled:
                self.app.data_received(PyBytes_FromStringAndSize(buf, filled))
            if n > 0:
                continue                         # the chunk filled up: more may be waiting
            if err != SSL_ERROR_WANT_READ and err != SSL_ERROR_ZERO_RETURN:
                self.fail()
            else:
                if self.ssl is not NULL:
                    self.flush()  # what reading made OpenSSL send (a key update's answer)
                if err == SSL_ERROR_ZERO_RETURN:
                    self.end_of_requests()  # the client's close_notify
            return 0
        return 0

    cdef int end_of_requests(self) except -1:
        """The client will send nothing more: the HTTP protocol says whether what it still
        serves keeps the connection open, once, whichever of TLS's close_notify and TCP's EOF
        came first."""
        if self.eof or self.closing or self.app is None:
            return 0
        self.eof = True
        if not self.app.eof_received():
            self.close()
        return 0

    cdef int flush(self) except -1:
        """Hands the ciphertext OpenSSL wrote to the TCP transport, in one write."""
        cdef size_t pending = BIO_ctrl_pending(self.wbio)
        if pending == 0:
            return 0
        data = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>pending)
        BIO_read(self.wbio, PyBytes_AS_STRING(data), <int>pending)
        self.tcp.write(data)
        return 0

    cdef int fail(self) except -1:
        """A TLS error (a failed handshake, a bad record): OpenSSL's alert, if it made one, goes
        out, and the connection closes. Nothing is logged: a client that cannot speak TLS is
        not the gateway's fault, and logging it would let any client fill the log."""
        ERR_clear_error()
        self.closing = True
        if self.app is None:
            self.listener.pending.pop(self, None)
            self.listener.counted(self.listener.at_errors)
        if self.ssl is not NULL:
            self.flush()
        self.tcp.close()
        return 0

    cdef int send(self, const unsigned char *data, Py_ssize_t size) except -1:
        cdef int n
        ERR_clear_error()
        while size > 0:
            n = SSL_write(self.ssl, data, <int>min(size, 1 << 30))
            if n <= 0:
                self.fail()
                return -2
            data += n
            size -= n
        return 0

    def _resume(self):
        self.read_scheduled = False
        if self.app is not None:
            self.read()  # which stops at once if reading was paused again or the connection closed

    # the HTTP protocol's transport

    def write(self, data):
        if self.closing or self.ssl is NULL:
            return
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if self.send(<const unsigned char *>view.buf, view.len) < 0:
                return
        finally:
            PyBuffer_Release(&view)
        self.flush()

    def writelines(self, parts):
        if self.closing or self.ssl is NULL:
            return
        cdef unsigned char joined[COALESCE]
        cdef Py_ssize_t used = 0
        cdef Py_buffer view
        for part in parts:
            PyObject_GetBuffer(part, &view, PyBUF_SIMPLE)
            try:
                if used + view.len <= COALESCE:
                    memcpy(joined + used, view.buf, view.len)
                    used += view.len
                    continue
                if used and self.send(joined, used) < 0:
                    return
                used = 0
                if self.send(<const unsigned char *>view.buf, view.len) < 0:
                    return
            finally:
                PyBuffer_Release(&view)
        if used and self.send(joined, used) < 0:
            return
        self.flush()

    def close(self):
        """TLS's close_notify, then the TCP close (after what is buffered is sent). The client's
        close_notify is not waited for: nginx does not either, and the HTTP exchange is over."""
        if self.closing:
            return
        self.closing = True
        if self.ssl is not NULL and self.app is not None:
            ERR_clear_error()
            SSL_shutdown(self.ssl)
            ERR_clear_error()
            self.flush()
        if self.tcp is not None:
            self.tcp.close()

    def abort(self):
        self.closing = True
        if self.tcp is not None:
            self.tcp.abort()

    def is_closing(self):
        return self.closing or self.tcp is None or self.tcp.is_closing()

    def can_write_eof(self):
        return False

    def write_eof(self):
        raise NotImplementedError("TLS connections do not half-close")

    def pause_reading(self):
        if not self.paused:
            self.paused = True
            if self.tcp is not None and not self.closing:
                self.tcp.pause_reading()

    def resume_reading(self):
        if self.paused:
            self.paused = False
            if self.tcp is not None and not self.closing:
                self.tcp.resume_reading()
                # What OpenSSL still holds is handed up from the loop, not from inside the
                # caller (which is in the middle of its own work).
                if not self.read_scheduled:
                    self.read_scheduled = True
                    self.listener.loop.call_soon(self._resume)

    def get_extra_info(self, name, default=None):
        """`peercert`: the client certificate (DER) if one was sent and verified against the
        listener's `client_ca`, else None; the rest is the TCP transport's (`peername`...)."""
        cdef X509 *cert
        cdef unsigned char *der = NULL
        cdef int size
        if name == "peercert":
            if self.ssl is NULL:
                return default
            cert = SSL_get0_peer_certificate(self.ssl)
            if cert is NULL or SSL_get_verify_result(self.ssl) != X509_V_OK:
                return None
            size = i2d_X509(cert, NULL)
            if size <= 0:
                return None
            out = PyBytes_FromStringAndSize(NULL, size)
            der = <unsigned char *>PyBytes_AS_STRING(out)
            i2d_X509(cert, &der)
            return out
        return self.tcp.get_extra_info(name, default) if self.tcp is not None else default
