description = 'Upgrade on a route that is not a websocket route: answered normally, Upgrade not forwarded'
expect = {
    'status': 200,
    'upstream_requests': 1,
    'upstream_headers_absent': ['Upgrade', 'Connection'],
}
