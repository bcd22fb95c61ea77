description = 'request line without version (HTTP/0.9 simple request form)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
