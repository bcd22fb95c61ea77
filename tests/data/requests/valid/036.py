description = 'OPTIONS with a body-less request and no Content-Length'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_method': 'OPTIONS'}
