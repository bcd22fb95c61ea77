description = 'Content-Length with a space inside the number'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
