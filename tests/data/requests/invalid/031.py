description = 'malformed trailer line after the last chunk'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
