description = 'repeated slashes merged'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_target': '/echo/x/y'}
