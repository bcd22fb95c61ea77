# Tunables of the proxy, in one place (uvloop's consts.pxi).

cdef enum:
    BODY_BUFFER = 256 * 1024        # request body held while no upstream connection is attached
    INLINE_BODY = 16 * 1024         # response body pieces up to this size are copied into the out
                                    # buffer (one write per read); larger ones are written as is
    REPLY_INLINE_BODY = 2 * 1024    # a local reply's body up to this size is copied after its head;
                                    # a larger one (a cache hit's) goes out as is, in the same writev:
                                    # measured, two copies of 2 KiB cost what the second iovec does
    REFUSED_BODY_DRAIN = 64 * 1024  # body bytes read and discarded after a local answer before
                                    # the connection is closed instead
