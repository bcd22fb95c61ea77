description = 'tab instead of space between method and target'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
