description = 'Transfer-Encoding in an HTTP/1.0 request: RFC 9112 §6.1 says treat the framing as faulty'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
