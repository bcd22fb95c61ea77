description = 'bare CR in a header value'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
bare_line_endings = True
