"""TLS to the database, from the URL parameters its own clients use.

- MySQL / MariaDB / Aurora MySQL: ``ssl_ca`` (the CA bundle, e.g. Amazon RDS's
  ``global-bundle.pem``), ``ssl_cert`` and ``ssl_key`` (a client certificate),
  ``ssl_check_hostname`` (default true), or just ``ssl=true`` to trust the system's CAs.
- PostgreSQL: libpq's ``sslmode`` (``disable``, ``require``, ``verify-ca``, ``verify-full``),
  ``sslrootcert``, ``sslcert``, ``sslkey``.

The drivers take an ``ssl.SSLContext`` rather than these parameters, so they are taken off
the URL and turned into one context, shared by the pool, schema creation and bulk loads.
Verification is on whenever a CA is given: a server whose certificate that CA did not sign
is refused. The CA ``rds`` (``ssl_ca=rds``, ``sslrootcert=rds``) is the Amazon RDS bundle
that comes with twotier (``amazon-rds-ca.pem``): Aurora's and RDS's servers, verified
wherever twotier runs (the image, the Lambda package), with no file to ship beside it.
"""

from __future__ import annotations

import ssl
from importlib.resources import files

from twotier.store.sql_url import DatabaseURL

_MYSQL = ("ssl", "ssl_ca", "ssl_cert", "ssl_key", "ssl_check_hostname")
_POSTGRESQL = ("sslmode", "sslrootcert", "sslcert", "sslkey")
_TRUE = ("1", "true", "yes", "on")


#: The CA name of the Amazon RDS bundle twotier carries.
RDS_CA = "rds"


def ca_file(value: str) -> str:
    """A CA parameter's file: the bundled Amazon RDS bundle for ``rds``, else as given."""
    if value == RDS_CA:
        return str(files("twotier.store").joinpath("amazon-rds-ca.pem"))
    return value


def split_tls(url: DatabaseURL) -> tuple[DatabaseURL, ssl.SSLContext | None]:
    """The URL without its TLS parameters, and the context they describe (None: no TLS)."""
    backend = url.get_backend_name()
    names = _MYSQL if backend == "mysql" else _POSTGRESQL if backend == "postgresql" else ()
    params = {name: str(url.query[name]) for name in names if name in url.query}
    for name in ("ssl_ca", "sslrootcert"):
        if name in params:
            params[name] = ca_file(params[name])
    if not params:
        return url, None
    bare = url.difference_update_query(list(params))
    if backend == "mysql":
        return bare, _mysql_context(params)
    return bare, _postgresql_context(params)


def _mysql_context(params: dict[str, str]) -> ssl.SSLContext | None:
    if set(params) == {"ssl"} and params["ssl"].lower() not in _TRUE:
        return None
    context = ssl.create_default_context(cafile=params.get("ssl_ca"))
    context.check_hostname = params.get("ssl_check_hostname", "true").lower() in _TRUE
    _client_certificate(context, params.get("ssl_cert"), params.get("ssl_key"))
    return context


def _postgresql_context(params: dict[str, str]) -> ssl.SSLContext | None:
    mode = params.get("sslmode", "verify-full" if "sslrootcert" in params else "prefer")
    if mode in ("disable", "allow", "prefer"):
        if mode != "disable" and "sslrootcert" in params:
            raise ValueError(f"sslmode={mode} with sslrootcert: use verify-ca or verify-full")
        return None
    if mode not in ("require", "verify-ca", "verify-full"):
        raise ValueError(f"unknown sslmode {mode!r}")
    context = ssl.create_default_context(cafile=params.get("sslrootcert"))
    if mode == "require":  # libpq: encrypt, but do not check who answers
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode == "verify-ca":
        context.check_hostname = False
    _client_certificate(context, params.get("sslcert"), params.get("sslkey"))
    return context


def _client_certificate(context: ssl.SSLContext, cert: str | None, key: str | None) -> None:
    if cert:
        context.load_cert_chain(cert, key)
