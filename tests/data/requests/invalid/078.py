description = 'one 40000-byte header, head over max_head 32KiB'
expect = {'status': 431, 'closed': True, 'upstream_requests': 0}
