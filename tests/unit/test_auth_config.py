"""Config of auth and TLS (issue 10): the exact problem lines of invalid files, and the key-set
rules of `fastgw.auth.jwks` (what a JWKS document may never make usable)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import trustme

from fastgw.auth.jwks import parse_jwks
from fastgw.config import ConfigError, load
from tests.support.auth import SigningKey, jwks

BASE = """\
listen:
  - {address: "127.0.0.1:8080"}
upstreams:
  app: {targets: ["127.0.0.1:9001"]}
"""
SECRET = "0123456789abcdef0123456789abcdef"


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "gw.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as info:
        load(str(path))
    return [line[len(str(path)) + 1:] for line in info.value.problems]


def with_auth(auth: str, route: str = "auth: a") -> str:
    return BASE + "auth:\n  a: " + auth + "\nroutes:\n  - {match: {prefix: /}, upstream: app, " + route + "}\n"


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ("{type: jwt, algorithms: [none], secret: x}",
         "6: auth.a.algorithms: 'none' (unsigned tokens) is never accepted"),
        ("{type: jwt, algorithms: [RS256, HS256], jwks: 'https://k.example/jwks'}",
         "6: auth.a.algorithms: HS256 take a secret, not a JWKS"),
        (f"{{type: jwt, algorithms: [RS256], secret: {SECRET}}}",
         "6: auth.a.algorithms: RS256 verify with public keys"),
        ("{type: jwt, algorithms: [HS256], secret: short}",
         "6: auth.a.secret: HS256 needs a secret of at least 32 bytes"),
        ("{type: jwt, algorithms: [RS256]}", "6: auth.a: needs exactly one of jwks (a file or URL) or secret"),
        ("{type: jwt, algorithms: [RS256], jwks: 'http://keys.example/jwks'}",
         "6: auth.a.jwks: 'http://keys.example/jwks' is plain http to another host: use https"),
        ("{type: jwt, algorithms: [RS256], jwks: missing.json}", "6: auth.a.jwks: cannot read"),
        ("{type: jwt, algorithms: [RS999], secret: x}", "6: auth.a.algorithms: unknown algorithm string 'RS999'"),
        ("{type: jwt, algorithms: [HS256], secret: " + SECRET + ", forward_claims: {sub: Host}}",
         "6: auth.a.forward_claims.sub: 'Host' cannot be set or removed"),
        ("{type: jwt, algorithms: [HS256], secret: " + SECRET + ", forward_claims: {sub: Authorization}}",
         "6: auth.a.forward_claims.sub: 'Authorization' cannot carry gateway-made values"),
        ("{type: jwt, algorithms: [HS256], secret: " + SECRET + ", from: 'body:token'}",
         "6: auth.a.from: expected header:NAME, cookie:NAME or query:NAME"),
        ("{type: api_key, keys: {alice: short}}", "6: auth.a.keys.alice: a key needs at least 16 characters"),
        ("{type: api_key, keys: {alice: alice-key-0123456789, bob: alice-key-0123456789}}",
         "6: auth.a.keys.bob: this key is also 'alice''s"),
        ("{type: api_key}", "6: auth.a: needs exactly one of keys (inline) or keys_file"),
        ("{type: introspection, url: 'https://auth.example/i', client_id: gw}",
         "6: auth.a: needs exactly one of client_secret or client_secret_file"),
        ("{type: kerberos}", "6: auth.a.type: expected one of jwt, api_key, introspection, mtls"),
    ],
)
def test_auth_problems(tmp_path: Path, auth: str, expected: str) -> None:
    found = problems(tmp_path, with_auth(auth))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_route_auth_problems(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent(f"""\
        auth:
          keys: {{type: api_key, keys: {{alice: alice-key-0123456789}}}}
          jwt: {{type: jwt, algorithms: [HS256], secret: {SECRET}}}
        rate_limits:
          per_sub: {{rate: 1/s, key: "claim:sub"}}
        routes:
          - {{match: {{prefix: /a}}, upstream: app, auth: jwts}}
          - {{match: {{prefix: /b}}, upstream: app, require: {{scope: x}}}}
          - {{match: {{prefix: /c}}, upstream: app, auth: keys, require: {{scope: x}}}}
          - {{match: {{prefix: /d}}, upstream: app, auth: keys, rate_limit: per_sub}}
          - {{match: {{prefix: /e}}, upstream: app, auth: [jwt, jwt]}}
          - {{match: {{prefix: /f}}, upstream: app, auth: jwt, require: {{scope: x, claims: {{role: [a, b]}}}}}}
        """)
    assert problems(tmp_path, text) == [
        "11: routes[0].auth: unknown auth string 'jwts' (did you mean 'jwt'?)",
        "12: routes[1].require: require needs auth on the route (who the requirements apply to)",
        "13: routes[2].require: scope and claims need token claims, which auth 'keys' (api_key) does not give",
        "14: routes[3].rate_limit: rate limit 'per_sub' is keyed by claim:sub, and this route's auth gives no token "
        "claims",
        "15: routes[4].auth[1]: auth 'jwt' is listed twice",
    ]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    for name in ("a", "b"):
        leaf = ca.issue_cert("localhost")
        leaf.cert_chain_pems[0].write_to_path(str(d / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(d / f"{name}.key"))
    (d / "junk.pem").write_text("not a certificate\n")
    return d


@pytest.mark.parametrize(
    ("tls", "expected"),
    [
        ("{cert: D/a.pem, key: D/b.key}", "2: listen[0].tls.cert: the key in D/b.key does not match the certificate"),
        ("{cert: D/junk.pem, key: D/a.key}", "2: listen[0].tls.cert: D/junk.pem holds no PEM certificate"),
        ("{cert: D/none.pem, key: D/a.key}", "2: listen[0].tls.cert: cannot read D/none.pem"),
        ("{cert: D/a.pem}", "2: listen[0].tls.key: required key is missing"),
        ("{cert: D/a.pem, key: D/a.key, min_version: '1.1'}", '2: listen[0].tls.min_version: expected "1.2" or "1.3"'),
        ("{cert: D/a.pem, key: D/a.key, client_cert: required}",
         "2: listen[0].tls.client_cert: client certificates are verified against client_ca: set it"),
        ("{cert: D/a.pem, key: D/a.key, ciphers: NOPE}", "2: listen[0].tls.ciphers: OpenSSL knows no cipher in 'NOPE'"),
        ("{certificates: [{cert: D/a.pem, key: D/a.key, sni: ['bad name']}]}",
         "2: listen[0].tls.certificates[0].sni[0]: 'bad name' is not a DNS name"),
    ],
)
def test_listener_tls_problems(tmp_path: Path, tls_files: Path, tls: str, expected: str) -> None:
    text = BASE.replace('{address: "127.0.0.1:8080"}', '{address: "127.0.0.1:8443", tls: ' + tls + "}")
    text += "routes:\n  - {match: {prefix: /}, upstream: app}\n"
    found = problems(tmp_path, text.replace("D/", f"{tls_files}/"))
    assert len(found) == 1 and found[0].startswith(expected.replace("D/", f"{tls_files}/")), found


def test_valid_tls_and_auth_load(tmp_path: Path, tls_files: Path) -> None:
    key = SigningKey.ec("e1")
    (tmp_path / "jwks.json").write_text(json.dumps(jwks(key)))
    path = tmp_path / "gw.yaml"
    path.write_text(textwrap.dedent(f"""\
        listen:
          - {{address: "127.0.0.1:8443", tls: {{cert: {tls_files}/a.pem, key: {tls_files}/a.key,
              client_ca: {tls_files}/ca.pem, client_cert: optional}}}}
        upstreams:
          app: {{targets: ["127.0.0.1:9001"], tls: {{ca: {tls_files}/ca.pem, sni: app.internal}}}}
        auth:
          j: {{type: jwt, algorithms: [ES256], jwks: jwks.json, forward_claims: {{sub: X-User}}}}
          k: {{type: api_key, keys: {{alice: alice-key-0123456789}}, consumer_header: X-Who}}
        routes:
          - {{match: {{prefix: /}}, upstream: app, auth: [j, k], require: {{consumers: [alice]}}}}
        """))
    config = load(str(path))
    assert config.auth_headers == ("x-user", "x-who")
    assert config.listen[0].tls is not None and config.listen[0].tls.client_cert == "optional"
    assert config.upstreams["app"].tls is not None and config.upstreams["app"].tls.sni == "app.internal"
    assert config.routes[0].auth == ("j", "k")


def test_jwks_documents_never_make_secrets_or_weak_keys_usable() -> None:
    rsa, ec, ed = SigningKey.rsa("r"), SigningKey.ec("e"), SigningKey.ed25519("d")
    small = SigningKey.rsa("small", bits=1024)
    private = dict(rsa.jwk, kid="priv", d="AQAB")
    oct_key = {"kty": "oct", "kid": "h", "k": "c2VjcmV0"}
    enc = dict(ec.jwk, kid="enc", use="enc")
    keys = parse_jwks(json.dumps({"keys": [rsa.jwk, ec.jwk, ed.jwk, small.jwk, private, oct_key, enc]}))
    assert len(keys) == 3 and keys.skipped == 4
    assert keys.candidates("r", "RS256") and keys.candidates("r", "PS256")
    assert keys.candidates("r", "ES256") == []  # a key is only used with its own type
    assert keys.candidates("e", "ES384") == []  # and its own curve
    assert keys.candidates("d", "EdDSA")
    assert keys.candidates("h", "RS256") is None and keys.candidates("small", "RS256") is None
    assert len(keys.candidates(None, "RS256") or []) == 1
    only = parse_jwks(json.dumps({"keys": [dict(rsa.jwk, alg="RS384")]}))
    assert only.candidates("r", "RS256") == [] and only.candidates("r", "RS384")
    for bad in ("not json", "[]", '{"keys": {}}', json.dumps({"keys": [oct_key]})):
        with pytest.raises(ValueError):
            parse_jwks(bad)
