description = "Transfer-Encoding ',chunked': RFC 9110 §5.6.1 ignores empty list elements, and llhttp frames it as chunked too, so it is chunked (not an unknown coding)"
expect = {'status': 200, 'upstream_requests': 1, 'upstream_body_length': 5}
