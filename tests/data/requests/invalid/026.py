description = 'chunk size with leading whitespace'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
