description = 'body error, found after a streaming gateway may have sent the head on: chunk extension with a control character'
expect = {'status': 400, 'closed': True, 'upstream_requests': None, 'upstream_completed': 0}
