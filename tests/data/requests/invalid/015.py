description = "Transfer-Encoding 'identity' (removed from HTTP/1.1): not implemented"
expect = {'status': 501, 'closed': True, 'upstream_requests': 0}
