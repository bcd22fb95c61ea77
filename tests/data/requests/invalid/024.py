description = 'chunk size overflowing 64 bits: not a number any parser agrees on, so 400 rather than 413'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
