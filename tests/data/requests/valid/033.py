description = 'Host forwarded byte-exact (case and port kept)'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_headers': {'Host': 'GW.Test:8080'}}
