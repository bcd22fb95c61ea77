description = 'well-formed X-Request-ID kept and returned'
expect = {
    'status': 200,
    'upstream_requests': 1,
    'upstream_headers': {'X-Request-ID': 'abc-123.DEF:4_5'},
    'response_headers': {'X-Request-ID': 'abc-123.DEF:4_5'},
}
