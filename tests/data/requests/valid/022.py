description = 'client X-Forwarded-For replaced by the peer address'
expect = {
    'status': 200,
    'upstream_requests': 1,
    'upstream_headers': {'X-Forwarded-For': '127.0.0.1'},
}
