description = 'empty header name'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
