description = 'bare LF in a header value (would smuggle a second header past a CRLF-only reader)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
bare_line_endings = True
