description = 'Host with an empty label between two dots'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
