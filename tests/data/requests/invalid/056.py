description = 'two spaces between method and target'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
