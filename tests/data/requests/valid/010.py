description = 'Connection: close honoured'
expect = {'status': 200, 'upstream_requests': 1, 'closed': True}
