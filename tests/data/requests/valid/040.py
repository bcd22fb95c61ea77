description = 'header names with underscores are dropped by default (CGI-style backends fold _ into -, so they could pose as framing or gateway-owned headers)'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_headers_absent': ['Transfer_Encoding', 'X_Forwarded_For', 'X_Custom']}
