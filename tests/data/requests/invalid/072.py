description = 'path with %00 (encoded NUL)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
