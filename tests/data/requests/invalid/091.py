description = 'Content-Length 2MiB, over max_body 1MiB, with 512KiB of the body in the same write: the 413 goes out before the body is read, and the connection must end with a FIN after it (a lingering close), not with the reset a socket closed with unread bytes gets, which can destroy the answer'
expect = {'status': 413, 'closed': True, 'upstream_requests': 0}
