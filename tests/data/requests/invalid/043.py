description = 'HTTP/1.1 request without Host'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
