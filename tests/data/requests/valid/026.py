description = "client X-Forwarded-Proto/-Host/-Port replaced by the gateway's"
expect = {
    'status': 200,
    'upstream_requests': 1,
    'upstream_headers': {'X-Forwarded-Proto': 'http', 'X-Forwarded-Host': 'gw.test', 'X-Forwarded-Port': '{port}'},
}
