description = 'path with lone percent sign'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
