description = 'target with a #fragment (DESIGN §8)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
