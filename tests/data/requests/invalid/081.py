description = 'first chunk announces 2MiB, over max_body 1MiB (data not sent: the size line alone decides; upstream not asserted, a streaming gateway may have sent the head on)'
expect = {'status': 413, 'closed': True, 'upstream_requests': None}
