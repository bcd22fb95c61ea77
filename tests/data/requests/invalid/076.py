description = 'path with raw non-ASCII bytes (UTF-8 é)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
