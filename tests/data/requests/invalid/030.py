description = 'chunk size line ended by a bare LF'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
bare_line_endings = True
