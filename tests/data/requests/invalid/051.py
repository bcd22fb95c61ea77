description = 'HTTP/2.0 in an HTTP/1 request line'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
