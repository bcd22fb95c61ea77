description = "Transfer-Encoding 'gzip, chunked': a coding other than chunked is not implemented"
expect = {'status': 501, 'closed': True, 'upstream_requests': 0}
