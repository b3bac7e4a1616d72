"""Test certificates, made at test time with the ``openssl`` command: a CA, server
certificates for an RSA key (PKCS#1 and PKCS#8 files) and an EC key (SEC1 and
PKCS#8 files), and a client certificate, all signed by the CA."""

import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_EXT = (
    "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    "extendedKeyUsage=serverAuth\n"
    "basicConstraints=CA:FALSE\n"
)
CLIENT_EXT = "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass
class Certs:
    dir: Path
    ca: Path
    ca_key: Path

    def path(self, name):
        return self.dir / name

    def sign(self, key, name, serial, ext=SERVER_EXT, cn="localhost"):
        """Signs ``key`` into ``name`` with this CA, with serial number ``serial``."""
        (self.dir / f"{name}.ext").write_text(ext)
        openssl("req", "-new", "-key", key, "-out", f"{name}.csr", "-subj", f"/CN={cn}",
                cwd=self.dir)  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", self.ca.name, "-CAkey",
            self.ca_key.name, "-set_serial", str(serial), "-days", "2", "-out", name,
            "-extfile", f"{name}.ext", cwd=self.dir,
        )  # fmt: skip
        return self.dir / name


def make_certs(directory):
    d = Path(directory)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=ferrocorn test CA", cwd=d)  # fmt: skip
    certs = Certs(d, d / "ca.pem", d / "ca.key")
    # RSA: PKCS#1 ("BEGIN RSA PRIVATE KEY") and the same key as PKCS#8.
    openssl("genrsa", "-traditional", "-out", "rsa-pkcs1.key", "2048", cwd=d)
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", "rsa-pkcs1.key", "-out", "rsa-pkcs8.key",
            cwd=d)  # fmt: skip
    # EC: SEC1 ("BEGIN EC PRIVATE KEY") and the same key as PKCS#8.
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec-sec1.key", cwd=d)
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", "ec-sec1.key", "-out", "ec-pkcs8.key", cwd=d)
    certs.sign("rsa-pkcs1.key", "rsa.pem", 1001)
    certs.sign("ec-sec1.key", "ec.pem", 2001)
    openssl("genrsa", "-out", "client.key", "2048", cwd=d)
    certs.sign("client.key", "client.pem", 3001, ext=CLIENT_EXT, cn="test client")
    assert b"BEGIN RSA PRIVATE KEY" in (d / "rsa-pkcs1.key").read_bytes()
    assert b"BEGIN EC PRIVATE KEY" in (d / "ec-sec1.key").read_bytes()
    assert b"BEGIN PRIVATE KEY" in (d / "ec-pkcs8.key").read_bytes()
    return certs
