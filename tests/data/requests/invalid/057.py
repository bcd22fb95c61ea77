description = 'trailing space after the version'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
