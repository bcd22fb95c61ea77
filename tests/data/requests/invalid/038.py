description = 'space between header name and colon (RFC 9112 §5.1)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
