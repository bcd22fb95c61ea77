description = 'path with %2f (encoded slash, lower-case hex)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
