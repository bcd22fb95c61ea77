description = "Content-Length as a list of identical values ('5, 5'): refused like the repeated header"
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
