description = 'HTTP/1.2 version'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
