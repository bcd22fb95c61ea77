description = 'Content-Length 2MiB, over max_body 1MiB (body not sent: the length alone decides)'
expect = {'status': 413, 'closed': True, 'upstream_requests': 0}
