description = 'target without a leading slash'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
