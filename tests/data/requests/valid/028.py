description = '128-character X-Request-ID (the longest allowed) kept'
expect = {
    'status': 200,
    'upstream_requests': 1,
    'upstream_headers': {'X-Request-ID': 'rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr'},
}
