description = 'space between Transfer-Encoding and the colon (RFC 9112 §5.1: MUST be rejected with 400)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
