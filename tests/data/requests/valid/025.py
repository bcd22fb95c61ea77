description = 'client X-Original-URL and X-Rewrite-URL removed'
expect = {
    'status': 200,
    'upstream_requests': 1,
    'upstream_headers_absent': ['X-Original-URL', 'X-Rewrite-URL'],
}
