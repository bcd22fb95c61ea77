description = 'chunk size that is not hex'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
