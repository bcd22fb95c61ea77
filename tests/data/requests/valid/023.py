description = 'client X-Real-IP not passed on (set to the peer or removed)'
expect = {
    'status': 200,
    'upstream_requests': 1,
    'upstream_headers_if_present': {'X-Real-IP': '127.0.0.1'},
}
