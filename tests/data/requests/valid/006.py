description = 'reserved and other percent escapes forwarded as they are'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_target': '/echo/a%3Fb%20c%25d%23'}
