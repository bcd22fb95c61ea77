description = "Transfer-Encoding 'chunked, gzip': chunked not last leaves no way to find the end"
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
