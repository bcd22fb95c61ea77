description = 'absolute-form target agreeing with Host forwarded in origin-form'
expect = {
    'status': 200,
    'upstream_requests': 1,
    'upstream_target': '/echo/abs?q=1',
    'upstream_headers': {'Host': 'gw.test'},
}
