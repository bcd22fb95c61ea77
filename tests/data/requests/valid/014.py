description = "transfer coding names are case-insensitive (RFC 9112 §7): 'Chunked'"
expect = {
    'status': 200,
    'upstream_requests': 1,
    'upstream_body_length': 5,
    'upstream_body_sha256': '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
}
