"""`tls` of a `listen` entry and of an upstream (DESIGN §8): certificate files are loaded here, at
config load, so that a missing, unreadable or mismatched file is a config error naming the key
and its line, never a worker that cannot start."""

from __future__ import annotations

import ssl
from typing import Any

from fastgw.tls import check_cert_key

from ..model import MOZILLA_INTERMEDIATE, CertKey, ListenerTls, UpstreamTls
from ..report import Context, Report, section, sequence
from ..validators import file_path, one_of, validate_bool, validate_string
from ..yamlsrc import Path, kind_of

__all__ = ["validate_listener_tls", "validate_upstream_tls"]

LISTENER_TLS_KEYS = ("cert", "key", "certificates", "min_version", "ciphers", "client_ca", "client_cert")
UPSTREAM_TLS_KEYS = ("verify", "ca", "sni", "client_cert")


def validate_listener_tls(report: Report, path: Path, value: Any, context: Context) -> ListenerTls | None:
    """`{cert, key}` or `{certificates: [{cert, key, sni: [names]}]}`, with `min_version`,
    `ciphers`, `client_ca` and `client_cert` (off | optional | required)."""
    present = section(report, path, value, LISTENER_TLS_KEYS)
    if present is None:
        return None
    single = "cert" in present or "key" in present
    if single and "certificates" in present:
        report.error(path, "give either cert and key, or certificates, not both")
        return None
    certs: list[CertKey] = []
    ok = True
    if "certificates" in present:
        items = sequence(report, (*path, "certificates"), present["certificates"], non_empty=True)
        for index, item in enumerate(items):
            cert = _cert_key(report, (*path, "certificates", index), item, context, with_sni=True)
            ok = ok and cert is not None
            if cert is not None:
                certs.append(cert)
        ok = ok and bool(items)
    elif single:
        cert = _cert_key(report, path, {k: present[k] for k in ("cert", "key") if k in present}, context)
        ok = cert is not None
        if cert is not None:
            certs.append(cert)
    else:
        report.error(path, "needs cert and key (or certificates: a list of them, chosen by SNI)")
        return None
    kwargs: dict[str, Any] = {}
    if "min_version" in present:
        version = present["min_version"]
        if isinstance(version, float):
            version = f"{version:.1f}"
        if version not in ("1.2", "1.3"):
            report.error((*path, "min_version"), f'expected "1.2" or "1.3" (older TLS is refused), got {version!r}')
            ok = False
        else:
            kwargs["min_version"] = version
    if "ciphers" in present:
        ciphers = report.check((*path, "ciphers"), present["ciphers"], validate_ciphers, None)
        ok = ok and ciphers is not None
        if ciphers is not None:
            kwargs["ciphers"] = ciphers
    if "client_ca" in present:
        ca = report.check((*path, "client_ca"), present["client_ca"], readable_ca(context.base_dir), None)
        ok = ok and ca is not None
        kwargs["client_ca"] = ca
    if "client_cert" in present:
        mode = report.check(
            (*path, "client_cert"), present["client_cert"], one_of("off", "optional", "required"), None
        )
        if mode is None:
            ok = False
        elif mode != "off" and "client_ca" not in present:
            report.error((*path, "client_cert"), "client certificates are verified against client_ca: set it")
            ok = False
        kwargs["client_cert"] = mode
    elif "client_ca" in present:
        kwargs["client_cert"] = "required"
    if not ok:
        return None
    return ListenerTls(certificates=tuple(certs), **kwargs)


def _cert_key(report: Report, path: Path, value: Any, context: Context, *, with_sni: bool = False) -> CertKey | None:
    keys = ("cert", "key", "sni") if with_sni else ("cert", "key")
    present = section(report, path, value, keys, required=("cert", "key"))
    if present is None or "cert" not in present or "key" not in present:
        return None
    resolve = file_path(context.base_dir)
    cert = report.check((*path, "cert"), present["cert"], resolve, None)
    key = report.check((*path, "key"), present["key"], resolve, None)
    if cert is None or key is None:
        return None
    try:
        check_cert_key(cert, key)
    except ValueError as exc:
        report.error((*path, "cert"), str(exc))
        return None
    names: tuple[str, ...] = ()
    if "sni" in present:
        raw = present["sni"] if isinstance(present["sni"], list) else [present["sni"]]
        found = []
        for index, name in enumerate(raw):
            item_path = (*path, "sni", index) if isinstance(present["sni"], list) else (*path, "sni")
            checked = report.check(item_path, name, validate_sni_name, None)
            if checked is not None:
                found.append(checked)
        names = tuple(found)
    return CertKey(cert, key, names)


def validate_sni_name(value: Any) -> str:
    name = validate_string(value).lower().rstrip(".")
    labels = (name[2:] if name.startswith("*.") else name).split(".")
    if not all(label and len(label) <= 63 and all(c.isalnum() or c in "-_" for c in label) for label in labels):
        raise ValueError(f"{value!r} is not a DNS name (a leading '*.' matches one label)")
    return name


def validate_ciphers(value: Any) -> str:
    """An OpenSSL cipher string for TLS 1.2 that OpenSSL accepts."""
    text = validate_string(value)
    if text == "intermediate":
        return MOZILLA_INTERMEDIATE
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(text)
    except ssl.SSLError:
        raise ValueError(f"OpenSSL knows no cipher in {text!r}") from None
    return text


def readable_ca(base_dir: str) -> Any:
    resolve = file_path(base_dir)

    def validate_ca(value: Any) -> str:
        path = resolve(value)
        try:
            ssl.create_default_context(cafile=path)
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        except ssl.SSLError:
            raise ValueError(f"{path} holds no PEM CA certificate") from None
        return path

    return validate_ca


def validate_upstream_tls(report: Report, path: Path, value: Any, context: Context) -> UpstreamTls | None:
    """`{verify: true, ca, sni, client_cert: {cert, key}}`; `tls: true` is `tls: {}`."""
    if value is True:
        return UpstreamTls()
    if not isinstance(value, dict):
        report.error(path, f"expected a mapping (or true), got {kind_of(value)}")
        return None
    present = section(report, path, value, UPSTREAM_TLS_KEYS)
    if present is None:
        return None
    kwargs: dict[str, Any] = {}
    ok = True
    if "verify" in present:
        kwargs["verify"] = report.check((*path, "verify"), present["verify"], validate_bool, True)
    if "ca" in present:
        kwargs["ca"] = report.check((*path, "ca"), present["ca"], readable_ca(context.base_dir), None)
        ok = ok and kwargs["ca"] is not None
    if "sni" in present:
        kwargs["sni"] = report.check((*path, "sni"), present["sni"], validate_sni_name, None)
        ok = ok and kwargs["sni"] is not None and not kwargs["sni"].startswith("*.")
    if "client_cert" in present:
        client = _cert_key(report, (*path, "client_cert"), present["client_cert"], context)
        ok = ok and client is not None
        kwargs["client_cert"] = client
    return UpstreamTls(**kwargs) if ok else None
