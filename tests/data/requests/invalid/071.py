description = 'path with raw backslash'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
