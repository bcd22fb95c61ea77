description = "Transfer-Encoding 'chunked, chunked': chunked repeated"
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
