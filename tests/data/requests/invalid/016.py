description = 'unknown transfer coding'
expect = {'status': 501, 'closed': True, 'upstream_requests': 0}
