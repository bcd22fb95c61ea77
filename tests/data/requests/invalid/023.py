description = 'negative chunk size'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
