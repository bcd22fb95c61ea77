description = 'lower-case protocol name (HTTP-name is case-sensitive)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
