description = 'repeated ordinary headers forwarded in order'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_headers': {'X-Multi': ['1', '2']}}
