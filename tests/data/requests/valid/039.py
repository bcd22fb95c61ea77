description = 'absolute-form target with dot segments: normalized like the origin form'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_target': '/echo'}
