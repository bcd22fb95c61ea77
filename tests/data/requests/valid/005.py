description = 'dot segments resolved before slashes are merged (DESIGN §8: /a//../b -> /a/b)'
expect = {'status': 200, 'upstream_requests': 1, 'upstream_target': '/echo/a/b'}
