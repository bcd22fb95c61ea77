description = 'Content-Length with a plus sign'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
