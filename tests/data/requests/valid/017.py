description = 'Connection: foo with Foo: bar: Foo not forwarded'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_headers_absent': ['Foo', 'Connection']}
