description = 'Host repeated with the same value'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
