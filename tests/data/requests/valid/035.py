description = 'exactly max_headers (100) header lines accepted'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_headers': {'X-H98': '98'}}
