description = 'Expect with something other than 100-continue (RFC 9110 §10.1.1: 417)'
expect = {'status': 417, 'upstream_requests': 0}
