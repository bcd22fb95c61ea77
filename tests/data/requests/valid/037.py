description = (
    'two spaces between method and target: RFC 9112 §3 lets a recipient parse the request line on '
    'whitespace boundaries (llhttp does), and the gateway writes its own request line upstream with '
    'single spaces, so the upstream never sees the irregular form'
)
expect = {'status': 200, 'upstream_requests': 1, 'upstream_target': '/echo'}
