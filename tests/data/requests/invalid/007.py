description = 'negative Content-Length'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
