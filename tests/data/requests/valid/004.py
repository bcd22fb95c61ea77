description = 'percent-encoded dot segments decoded, then resolved'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_target': '/echo/b'}
