description = 'method with a non-token character'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
