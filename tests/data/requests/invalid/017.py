description = "transfer coding 'xchunked' (not chunked, whatever a substring match thinks): unknown coding"
expect = {'status': 501, 'closed': True, 'upstream_requests': 0}
