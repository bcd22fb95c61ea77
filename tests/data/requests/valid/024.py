description = 'client Forwarded removed (not configured)'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_headers_absent': ['Forwarded']}
