description = 'path with %2F (encoded slash)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
