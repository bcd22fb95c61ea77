description = 'chunked body over max_body 1MiB: one chunk of 1MiB+1 bytes, no last chunk sent (the gateway must answer once the limit is passed; the head may have gone upstream, the body must not)'
expect = {'status': 413, 'closed': True, 'upstream_requests': None, 'upstream_completed': 0}
