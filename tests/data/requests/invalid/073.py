description = 'path with invalid percent escape %zz'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
