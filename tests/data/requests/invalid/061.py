description = 'lower-case method: a token, but no method we know; refused (400 or 501), never forwarded'
expect = {'status': [400, 501], 'closed': True, 'upstream_requests': 0}
