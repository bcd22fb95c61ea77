description = 'headers named in Connection are not forwarded, others are'
expect = {
    'status': 200,
    'upstream_requests': 1,
    'upstream_headers_absent': ['X-Drop', 'Connection'],
    'upstream_headers': {'X-Keep': '2'},
    'closed': False,
}
