"""A throwaway PKI for TLS tests: a CA, a server certificate for 127.0.0.1 and a client
certificate, all signed by the CA and valid for two hours around now; and stub HTTPS servers
presenting that server certificate."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    usage: x509.ObjectIdentifier | None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), False
        )
    )
    if usage is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, False)
    return builder.sign(signing_key, hashes.SHA256())


def make_pki(root: Path) -> Pki:
    """Write the PEM files of a new CA, server and client certificate under `root`."""

    def write(name: str, data: bytes) -> Path:
        path = root / name
        path.write_bytes(data)
        return path

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("carm-test-ca", ca_key, None, None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue("apiserver", server_key, (ca, ca_key), ExtendedKeyUsageOID.SERVER_AUTH)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue("carm", client_key, (ca, ca_key), ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = serialization.Encoding.PEM
    return Pki(
        ca=write("ca.crt", ca.public_bytes(pem)),
        server_cert=write("server.crt", server.public_bytes(pem)),
        server_key=write("server.key", pem_key(server_key)),
        client_cert=write("client.crt", client.public_bytes(pem)),
        client_key=write("client.key", pem_key(client_key)),
    )


def server_tls(pki: Pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    """A server's context presenting pki's 127.0.0.1 certificate; with `require_client_cert`,
    clients must present a certificate the CA signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.load_verify_locations(pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_common_name(request: web.Request) -> str | None:
    """The common name of the certificate the client presented, None without one."""
    peer = request.transport.get_extra_info("peercert") if request.transport else None
    return dict(item[0] for item in peer["subject"])["commonName"] if peer else None


@asynccontextmanager
async def serve_https(
    app: web.Application, pki: Pki, *, require_client_cert: bool = False
) -> AsyncIterator[int]:
    """Serve `app` over TLS (see `server_tls`) on a free port of 127.0.0.1, yielded."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        context = server_tls(pki, require_client_cert=require_client_cert)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()
