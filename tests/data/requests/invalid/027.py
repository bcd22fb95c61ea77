description = 'chunk data longer than its size (no CRLF after the data)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
