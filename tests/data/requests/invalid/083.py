description = 'unknown coding refused (501) with a complete request pipelined behind it in the same write: once the gateway answers itself and closes, nothing after is parsed or forwarded'
expect = {'status': 501, 'closed': True, 'upstream_requests': 0}
