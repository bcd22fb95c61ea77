description = 'path with %5C (encoded backslash)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
