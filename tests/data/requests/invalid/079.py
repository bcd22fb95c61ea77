description = '9000-byte request target, over max_url 8KiB'
expect = {'status': 414, 'closed': True, 'upstream_requests': 0}
