description = 'chunked request body re-framed for the upstream'
expect = {
    'status': 200,
    'upstream_requests': 1,
    'upstream_body_length': 11,
    'upstream_body_sha256': 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9',
    'closed': False,
}
