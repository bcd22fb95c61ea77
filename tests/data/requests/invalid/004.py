description = 'two identical Content-Length lines: RFC 9112 §6.3 lets a recipient merge them, but like strict proxies we refuse any repeated Content-Length (one framing rule, nothing to merge or compare)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
