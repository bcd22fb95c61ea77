description = 'body error, found after a streaming gateway may have sent the head on: chunk size line ended by a bare LF'
expect = {'status': 400, 'closed': True, 'upstream_requests': None, 'upstream_completed': 0}
bare_line_endings = True
