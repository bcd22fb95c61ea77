description = 'chunk extension with an unterminated quoted string'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
