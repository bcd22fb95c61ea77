description = 'Host with an invalid percent escape'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
