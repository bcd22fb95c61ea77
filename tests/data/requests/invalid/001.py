description = 'Content-Length and Transfer-Encoding together (CL.TE smuggling): ambiguous framing'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
