description = 'Host with a space in it'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
