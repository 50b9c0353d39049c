"""The PKI of the local control plane, as kubeadm lays it out (fewer files).

A cluster CA, the API server's serving certificate, an admin client certificate and the
service-account signing key.

Everything is generated with ``cryptography`` into the state directory on the first ``up`` and
reused afterwards, so a kubeconfig written once keeps working across restarts.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

#: The first address of the Service range: the ``kubernetes`` Service's ClusterIP.
API_SERVICE_IP = "10.96.0.1"
VALID_DAYS = 3650
KEY_BITS = 2048


#: The PKI's files (kubeadm's names where kubeadm has the same file).
CA_CERT, CA_KEY = "ca.crt", "ca.key"
APISERVER_CERT, APISERVER_KEY = "apiserver.crt", "apiserver.key"
ADMIN_CERT, ADMIN_KEY = "admin.crt", "admin.key"
SERVICE_ACCOUNT_KEY, SERVICE_ACCOUNT_PUB = "sa.key", "sa.pub"


@dataclass(frozen=True)
class Pki:
    """The PKI files in one directory."""

    root: Path

    def __getitem__(self, name: str) -> Path:
        """The path of one of the files named above."""
        return self.root / name


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _write_key(key: rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def _sign(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool = False,
    server_names: list[str] | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usages = [x509.ExtendedKeyUsageOID.CLIENT_AUTH] if client else [x509.ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_names:
        sans: list[x509.GeneralName] = []
        for name in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_pki(root: Path, extra_server_names: list[str] | None = None) -> Pki:
    """The PKI under ``root``, created when missing (an existing one is kept as it is)."""
    pki = Pki(root)
    if pki[CA_CERT].exists() and pki[ADMIN_KEY].exists() and pki[SERVICE_ACCOUNT_PUB].exists():
        return pki
    root.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("mnist-serve-local-ca")
    _write_key(ca_key, pki[CA_KEY])
    _write_cert(_sign(ca_name, ca_key, ca_name, ca_key, ca=True), pki[CA_CERT])

    server_key = _key()
    names = [
        "127.0.0.1",
        "localhost",
        API_SERVICE_IP,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        *(extra_server_names or []),
    ]
    _write_key(server_key, pki[APISERVER_KEY])
    _write_cert(_sign(_name("kube-apiserver"), server_key, ca_name, ca_key, server_names=names), pki[APISERVER_CERT])

    # system:masters: the group kubeadm's admin.conf is in (cluster-admin, bypasses RBAC).
    admin_key = _key()
    _write_key(admin_key, pki[ADMIN_KEY])
    _write_cert(
        _sign(_name("kubernetes-admin", "system:masters"), admin_key, ca_name, ca_key, client=True), pki[ADMIN_CERT]
    )

    sa_key = _key()
    _write_key(sa_key, pki[SERVICE_ACCOUNT_KEY])
    pki[SERVICE_ACCOUNT_PUB].write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return pki
