description = 'chunk extension with a control character'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
