description = 'HTTP/2 connection preface sent to an HTTP/1.1 listener'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
