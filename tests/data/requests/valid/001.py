description = 'dot segments resolved before forwarding'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_target': '/echo/a/c'}
