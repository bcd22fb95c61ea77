description = 'extra token after the version'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
