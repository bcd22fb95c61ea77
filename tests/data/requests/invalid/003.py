description = 'two different Content-Length values'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
