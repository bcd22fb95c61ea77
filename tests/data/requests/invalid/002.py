description = 'Transfer-Encoding before Content-Length (TE.CL order): ambiguous framing'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
