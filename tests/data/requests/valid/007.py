description = 'query string forwarded untouched while the path is normalized'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_target': '/echo/y?a=/../b&c=%2F&d'}
