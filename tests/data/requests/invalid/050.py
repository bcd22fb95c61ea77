description = 'Host with a non-numeric port'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
