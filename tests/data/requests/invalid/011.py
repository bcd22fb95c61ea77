description = 'empty Content-Length value'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
