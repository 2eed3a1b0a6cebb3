"""A per-deployment certificate authority: what a deployer makes when mTLS is on.

One CA per deployment (an EC P-256 key that exists only in the deploying process's
memory, and in a Kubernetes Secret for ``pyweaver kube``), a certificate per colocation
group and one for the deployer's control plane, each naming its holder in a URI
subject-alternative name (:mod:`pyweaver.contract._tls`). Certificates are short-lived
(:data:`DEFAULT_VALIDITY`): a deployment that must outlive them is redeployed (see
``docs/security.md``). Certificates of two deployments never verify each other: each
has its own CA.

::

    ca = DeploymentCA.create("d-1234")
    tls = ca.write_files(run_dir / "tls", groups=["main", "app.Cache"])
    tls.deployer.server_context()            # the envelopes' side
    tls.groups["app.Cache"]                  # paths handed to that group's weavelets
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyweaver.contract._tls import (
    TlsFiles,
    TlsMaterial,
    deployer_identity,
    group_identity,
)

__all__ = ["DEFAULT_VALIDITY", "DeploymentCA", "DeploymentTls"]

#: How long a deployment's certificates are valid.
DEFAULT_VALIDITY: Final = datetime.timedelta(days=30)
#: Certificates are valid from a little before they were made (clocks of a cluster's
#: machines differ a little).
_CLOCK_SKEW: Final = datetime.timedelta(minutes=5)


@attrs.frozen(kw_only=True)
class DeploymentTls:
    """The files of a deployment's mTLS: the deployer's and each group's."""

    deployer: TlsFiles
    groups: dict[str, TlsFiles]


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class DeploymentCA:
    """A deployment's certificate authority (see the module docstring)."""

    def __init__(
        self,
        deployment_id: str,
        key: ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        validity: datetime.timedelta,
    ) -> None:
        self.deployment_id = deployment_id
        self._key = key
        self.certificate = certificate
        self.validity = validity

    def __repr__(self) -> str:
        return f"<DeploymentCA {self.deployment_id}>"

    @classmethod
    def create(
        cls,
        deployment_id: str,
        *,
        validity: datetime.timedelta = DEFAULT_VALIDITY,
        now: datetime.datetime | None = None,
    ) -> DeploymentCA:
        """A new CA for ``deployment_id`` (``now``: for tests of expiry)."""
        now = now or datetime.datetime.now(datetime.UTC)
        key = _new_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pyweaver"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"pyweaver CA {deployment_id}"[:64]),
            ]
        )
        public = key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(deployment_id, key, certificate, validity)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, identity: str, common_name: str, *, now: datetime.datetime | None = None
    ) -> TlsMaterial:
        """A new key and a certificate naming ``identity`` (a URI SAN), good for both
        ends of a connection (weavelets serve and call)."""
        now = now or datetime.datetime.now(datetime.UTC)
        key = _new_key()
        public = key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pyweaver"),
                        x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "-"),
                    ]
                )
            )
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(min(now + self.validity, self.certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        return TlsMaterial(
            ca=self.certificate_pem,
            cert=certificate.public_bytes(serialization.Encoding.PEM),
            key=_key_pem(key),
        )

    def issue_group(self, group: str) -> TlsMaterial:
        return self.issue(group_identity(self.deployment_id, group), group)

    def issue_deployer(self) -> TlsMaterial:
        return self.issue(deployer_identity(self.deployment_id), "deployer")

    def write_files(
        self, directory: str | os.PathLike[str], groups: Iterable[str]
    ) -> DeploymentTls:
        """Issue the deployer's and every group's certificate and write them, with the
        CA certificate, into ``directory`` (made 0700 if missing; files 0600)."""
        base = Path(directory)
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(base, 0o700)
        deployer = self.issue_deployer().write(base, "deployer")
        files = {
            group: self.issue_group(group).write(base, f"group-{index}")
            for index, group in enumerate(sorted(set(groups)))
        }
        return DeploymentTls(deployer=deployer, groups=files)
