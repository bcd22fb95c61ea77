description = 'Host with userinfo'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
