"""Authentication (issue 10; docs/security.md): JWT with JWKS, API keys, OAuth2 token
introspection and client certificates, as AUTH-phase request filters.

- `build`: a worker's authenticators and each route's filter (the pipeline builder's entry);
- `jwt`, `jwks`: JWT verification, key sets, the verified-token cache;
- `apikey`: API keys and mTLS consumers;
- `introspect`: RFC 7662 introspection, the worker's side;
- `agent`, `shared`: the host-wide auth agent (JWKS URL fetches, introspection) the master
  supervises, and the state it shares with the workers;
- `tokens`, `require`: where credentials are read, the refusals, a route's `require`.
"""
