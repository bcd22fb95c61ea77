description = 'unreserved percent escapes decoded (%7e, %7E, %41, %2d, %5F)'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_target': '/echo/~user/~/A-_'}
