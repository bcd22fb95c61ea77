description = '101 header lines, over max_headers 100'
expect = {'status': 431, 'closed': True, 'upstream_requests': 0}
