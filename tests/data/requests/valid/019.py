description = 'Proxy-Connection not forwarded'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_headers_absent': ['Proxy-Connection']}
