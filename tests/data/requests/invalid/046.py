description = 'absolute-form target whose host disagrees with Host'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
