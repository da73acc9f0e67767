"""A TLS engine from DOCKER_HOST + DOCKER_TLS_VERIFY + DOCKER_CERT_PATH, for real: socat
serves the local engine's socket on 127.0.0.1 over TLS and requires a client certificate
signed by a CA made here (no second dockerd: nothing touches docker0). Run with
REQUESTS_CA_BUNDLE pointing elsewhere (as on hosts behind a TLS proxy, this one included),
it also shows the engine's own CA is the one checked."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from needs import missing
from suite_session import unique

pytestmark = pytest.mark.docker

FIXTURE = Path(__file__).parent.parent / "fixtures" / "buildmatrix"


def _key():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer_name: str, issuer_key, *, ca: bool = False,  # type: ignore[no-untyped-def]
          server: bool = False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert, key=None) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))


def _pki(root: Path, name: str) -> Path:
    """A CA and a client certificate it signed, laid out as DOCKER_CERT_PATH wants them
    (ca.pem, cert.pem, key.pem); the CA key next to it for signing the server's."""
    d = root / name
    d.mkdir()
    ca_key = _key()
    ca = _cert(f"{name} CA", ca_key, f"{name} CA", ca_key, ca=True)
    _write(d / "ca.pem", ca, ca_key)
    client_key = _key()
    _write(d / "cert.pem", _cert("client", client_key, f"{name} CA", ca_key), client_key)
    (d / "cert.key").rename(d / "key.pem")
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory: pytest.TempPathFactory, docker_client) -> Iterator[dict]:
    if shutil.which("socat") is None:
        missing("socat is not installed (scripts/setup-test-env.sh installs it)")
    base = str(docker_client.api.base_url)
    sock = "/var/run/docker.sock" if base.startswith("http+docker://") else None
    if sock is None or not Path(sock).exists():
        pytest.skip(f"the engine is not on the local socket ({base})")
    root = tmp_path_factory.mktemp("tls")
    good = _pki(root, "good")
    rogue = _pki(root, "rogue")  # a client certificate the server does not trust...
    shutil.copy(good / "ca.pem", rogue / "ca.pem")  # ...from a client that trusts it
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = x509.load_pem_x509_certificate((good / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((good / "ca.key").read_bytes(), None)
    server_key = _key()
    _write(root / "server.pem", _cert("127.0.0.1", server_key,
                                      ca.subject.rfc4514_string()[3:], ca_key, server=True),
           server_key)
    port = _free_port()
    proc = subprocess.Popen(
        ["socat", f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,"
         f"cert={root / 'server.pem'},key={root / 'server.key'},cafile={good / 'ca.pem'},"
         "verify=1", f"UNIX-CONNECT:{sock}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("socat did not listen")
            time.sleep(0.1)
        yield {"host": f"tcp://127.0.0.1:{port}", "good": good, "rogue": rogue}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _env(host: str, cert_path: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT")}
    env["DOCKER_HOST"] = host
    if cert_path is not None:
        env["DOCKER_TLS_VERIFY"] = "1"
        env["DOCKER_CERT_PATH"] = str(cert_path)
    return env


def _imagefactory(args: list[str], env: dict[str, str], cwd: Path
                  ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagefactory", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("ca_bundle", ["/etc/ssl/certs/ca-certificates.crt", None])
def test_build_over_tls_with_the_client_certificate(tls_engine: dict, docker_client,
                                                    tmp_path: Path, ca_bundle) -> None:
    repository = unique("tls")
    root = tmp_path / "matrix"
    shutil.copytree(FIXTURE, root)
    config = root / "variants.yaml"
    config.write_text(config.read_text().replace("repository: iftest-build",
                                                 f"repository: {repository}"))
    env = _env(tls_engine["host"], tls_engine["good"])
    env.pop("CURL_CA_BUNDLE", None)
    env.pop("REQUESTS_CA_BUNDLE", None)
    if ca_bundle:
        env["REQUESTS_CA_BUNDLE"] = ca_bundle
    try:
        r = _imagefactory(["build", "solo", "--progress", "plain", "--log-dir",
                           str(tmp_path / "logs")], env, root)
        assert r.returncode == 0, r.stderr
        assert f"building on {tls_engine['host']}" in r.stdout
        # The image is in the engine behind the TLS endpoint (the local one).
        assert docker_client.images.get(f"{repository}:solo").labels[
            "io.imagefactory.variant"] == "solo"
        again = _imagefactory(["build", "solo", "--progress", "plain"], env, root)
        assert again.returncode == 0 and "skipped (up to date)" in again.stdout
    finally:
        for image in docker_client.images.list(name=repository):
            for tag in image.tags:
                docker_client.images.remove(tag)


@pytest.mark.parametrize("who", ["no TLS", "untrusted client certificate"])
def test_refused_without_a_trusted_client_certificate_in_one_line(
        tls_engine: dict, tmp_path: Path, who: str) -> None:
    cert_path = None if who == "no TLS" else tls_engine["rogue"]
    env = _env(tls_engine["host"], cert_path)
    r = _imagefactory(["--config", str(FIXTURE / "variants.yaml"), "build", "solo",
                       "--progress", "plain", "--log-dir", str(tmp_path)], env, tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"imagefactory: error: cannot reach the Docker engine at "
                               f"{tls_engine['host']}: ")
    print(lines[0])


def test_doctor_names_the_tls_engine(tls_engine: dict, tmp_path: Path) -> None:
    env = _env(tls_engine["host"], tls_engine["good"])
    sysfs = Path(__file__).parent.parent / "fixtures" / "sysfs" / "no-amd-gpu"
    r = _imagefactory(["doctor", f"--sysfs-root={sysfs}", f"--dev-root={tmp_path}"], env,
                      tmp_path)
    assert f"answers at {tls_engine['host']}" in r.stdout, r.stdout + r.stderr
