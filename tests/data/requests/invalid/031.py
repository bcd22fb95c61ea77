description = 'body error, found after a streaming gateway may have sent the head on: malformed trailer line after the last chunk'
expect = {'status': 400, 'closed': True, 'upstream_requests': None, 'upstream_completed': 0}
