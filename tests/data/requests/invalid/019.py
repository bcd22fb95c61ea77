description = 'empty Transfer-Encoding value: not a coding list'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
