description = 'TE (hop-by-hop) not forwarded'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_headers_absent': ['TE']}
