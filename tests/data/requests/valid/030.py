description = '129-character X-Request-ID replaced'
expect = {
    'status': 200,
    'upstream_requests': 1,
    'upstream_header_matches': {'X-Request-ID': '[A-Za-z0-9._:-]{1,128}'},
}
