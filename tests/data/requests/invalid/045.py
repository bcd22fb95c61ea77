description = 'Host repeated with different values'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
