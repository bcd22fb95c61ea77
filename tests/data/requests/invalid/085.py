description = 'HTTP/0.9 request line (no version) and a single CRLF: llhttp waits for nothing more, the gateway answers 400 at once'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
