description = 'Host with a port and no name'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
