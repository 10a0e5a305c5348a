"""Regenerate the certificate fixtures in tests/portable/certs/ (real
certificates made with `cryptography`). The portable tests hold the values
they expect from these files; tests/test_x509.py checks those values
against `cryptography`'s reading of the same files, so after running this
script update EXPECT in tests/portable/test_x509.py (the failing
CPython test prints the new values).

    .venv/bin/python tests/make_cert_fixtures.py
"""
import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

OUT = Path(__file__).resolve().parent / "portable" / "certs"
UTC = datetime.timezone.utc


def _name(cn, typ=None, org=None):
    attrs = []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if typ is None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    else:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn, _type=typ))
    return x509.Name(attrs)


def _cert(subject, issuer, key, signer, serial, nb, na, ca=False, sans=(), algo=hashes.SHA256()):
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(serial)
         .not_valid_before(nb).not_valid_after(na)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    return b.sign(signer, algo)


def pem(c):
    return c.public_bytes(serialization.Encoding.PEM)


def der(c):
    return c.public_bytes(serialization.Encoding.DER)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Contoso Test CA", org="Contoso")
    ca = _cert(ca_name, ca_name, ca_key, ca_key, 0x01,
               datetime.datetime(2024, 1, 1, tzinfo=UTC), datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), ca=True)
    leaf_key = rsa.generate_private_key(65537, 2048)
    leaf = _cert(_name("dev-01"), ca_name, leaf_key, ca_key, 0x1F2E3D4C5B6A7988,
                 datetime.datetime(2025, 1, 1, tzinfo=UTC), datetime.datetime(2027, 1, 1, tzinfo=UTC),
                 sans=["dev-01.contoso-hub.example", "dev-01.local"])
    other = rsa.generate_private_key(65537, 2048)
    forever_key = ed25519.Ed25519PrivateKey.generate()
    forever = _cert(_name("forever"), _name("forever"), forever_key, forever_key,
                    0x7F0102030405060708090A0B0C0D0E0F10111213,
                    datetime.datetime(2024, 6, 1, tzinfo=UTC), datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
                    algo=None)
    p384_key = ec.generate_private_key(ec.SECP384R1())
    bmp = _name("Z\u00fcrich \u2603", typ=x509.name._ASN1Type.BMPString)
    p384 = _cert(bmp, bmp, p384_key, p384_key, 0x00C0FFEE,
                 datetime.datetime(2024, 2, 29, 12, 0, 0, tzinfo=UTC), datetime.datetime(2051, 6, 30, 12, 0, 0, tzinfo=UTC),
                 algo=hashes.SHA384())
    (OUT / "leaf.pem").write_bytes(pem(leaf))
    (OUT / "leaf.der").write_bytes(der(leaf))
    (OUT / "ca.der").write_bytes(der(ca))
    key_pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    (OUT / "chain.pem").write_bytes(
        b"subject=CN = dev-01\nissuer=O = Contoso, CN = Contoso Test CA\n" + pem(leaf)
        + key_pem + b"\r\n# the CA\r\n" + pem(ca).replace(b"\n", b"\r\n"))
    (OUT / "forever.pem").write_bytes(pem(forever))
    (OUT / "p384.der").write_bytes(der(p384))
    (OUT / "two.der").write_bytes(der(leaf) + der(forever))
    for f in sorted(OUT.iterdir()):
        print(f.name, f.stat().st_size)


if __name__ == "__main__":
    main()
