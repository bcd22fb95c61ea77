description = 'whitespace-led line right after the request line (RFC 9112 §2.2; ignoring it leaves no Host)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
