description = 'path with percent-encoded dot segments climbing above /'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
