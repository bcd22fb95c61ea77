description = 'obs-fold: a header continued on a line starting with a tab'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
