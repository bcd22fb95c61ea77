description = 'Expect: 100-continue with the body sent at once'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_body_length': 5}
