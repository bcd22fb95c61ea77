description = 'absolute-form target on HTTP/1.1 without Host'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
