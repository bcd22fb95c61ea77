description = 'Host of two dots: not a host name (empty labels)'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
