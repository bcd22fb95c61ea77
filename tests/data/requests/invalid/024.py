description = 'body error, found after a streaming gateway may have sent the head on: chunk size overflowing 64 bits: not a number any parser agrees on, so 400 rather than 413'
expect = {'status': 400, 'closed': True, 'upstream_requests': None, 'upstream_completed': 0}
