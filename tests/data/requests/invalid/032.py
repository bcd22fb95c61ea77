description = 'obs-fold: a header continued on a line starting with a space'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
