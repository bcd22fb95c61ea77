description = 'Host of one dot'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
