description = 'Host ending in byte 0xFF refused (400) with a complete request pipelined behind it: nothing after the refusal is forwarded'
expect = {'status': 400, 'closed': True, 'upstream_requests': 0}
