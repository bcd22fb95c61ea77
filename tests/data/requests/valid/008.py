description = "';' has no special meaning and case is kept"
expect = {'status': 200, 'upstream_requests': 1, 'upstream_target': '/echo/A;b/C;d=e'}
