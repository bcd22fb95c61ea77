description = 'chunk size with a 0x prefix'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
