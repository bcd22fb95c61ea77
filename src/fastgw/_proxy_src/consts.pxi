# Tunables of the proxy, in one place (uvloop's consts.pxi).

cdef enum:
    BODY_BUFFER = 256 * 1024        # request body held while no upstream connection is attached
    INLINE_BODY = 16 * 1024         # response body pieces up to this size are copied into the out
                                    # buffer (one write per read); larger ones are written as is
    REFUSED_BODY_DRAIN = 64 * 1024  # body bytes read and discarded after a local answer before
                                    # the connection is closed instead
