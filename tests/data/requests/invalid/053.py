description = 'HTTP/0.9 version'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
