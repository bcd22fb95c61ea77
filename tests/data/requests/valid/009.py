description = 'HTTP/1.0 request without Host is allowed, and the connection closed after it'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_target': '/echo/http10', 'closed': True}
