description = 'NUL in a header value'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
