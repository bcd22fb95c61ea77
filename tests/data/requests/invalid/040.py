description = 'header line without a colon'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
