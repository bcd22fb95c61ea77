description = 'space inside a header name'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
