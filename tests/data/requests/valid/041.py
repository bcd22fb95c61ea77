description = 'Host with a trailing dot (a fully qualified name) is a host name'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_headers': {'Host': 'gw.test.'}}
