description = 'Transfer-Encoding header repeated on two lines: chunked twice'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
