description = 'body error, found after a streaming gateway may have sent the head on: chunk data longer than its size (no CRLF after the data)'
expect = {'status': 400, 'closed': True, 'upstream_requests': None, 'upstream_completed': 0}
