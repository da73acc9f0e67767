"""The README's set-up runs on a stock distribution's Python, not only on a pyenv build.

Stock Debian and Ubuntu refuse `pip install` into /usr (PEP 668) and ship venv apart from
python3, so setup-test-env.sh builds a venv on /usr/bin/python3. The test runs that part of
the script in fresh debian:bookworm-slim and debian:sid-slim containers (the distribution's
python3, PEP 668 marker present) and uses the installed CLI; the Docker parts of the script
are skipped with IMAGEFACTORY_SETUP_VENV_ONLY so no engine is needed inside.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CA = Path("/etc/ssl/certs/ca-certificates.crt")


def test_this_run_uses_a_venv_on_the_distribution_python() -> None:
    """Run through scripts/test.sh (as CI does), the suite runs from the venv the set-up made,
    on the interpreter the set-up chose (IMAGEFACTORY_PYTHON, else /usr/bin/python3). Any
    other venv is the developer's own business, so outside test.sh there is nothing to check.
    """
    venv = os.environ.get("IMAGEFACTORY_SUITE_VENV")
    if not venv:
        pytest.skip("not run through scripts/test.sh")
    assert Path(sys.prefix).resolve() == Path(venv).resolve()
    cfg = Path(sys.prefix) / "pyvenv.cfg"
    home = dict(line.split(" = ", 1) for line in cfg.read_text().splitlines() if " = " in line)
    chosen = Path(os.environ.get("IMAGEFACTORY_PYTHON", "/usr/bin/python3"))
    assert Path(home["home"]) == chosen.parent, cfg.read_text()


# Debian 12, and sid for the newer line (Python 3.13 as in Debian 13, the same PEP 668
# marker and the separate python3-venv). Both bases are made by setup-test-env.sh; Ubuntu's
# archive is not reachable from the test machines, so Ubuntu is not run here.
@pytest.mark.docker
@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("base", ["debian:bookworm-slim", "debian:sid-slim"])
def test_setup_on_stock_debian_python(tmp_path: Path, base: str) -> None:
    name = f"imagefactory-test-setup-{uuid.uuid4().hex[:8]}"
    # PyPI is reached through the host's CA where a proxy re-signs TLS; passed at run time.
    ca = ["-v", f"{CA}:/host-ca.crt:ro", "-e", "PIP_CERT=/host-ca.crt"] if CA.is_file() else []
    script = (
        # The archive this machine reaches is a frozen copy: its sid Release files are past
        # their Valid-Until date, which a live mirror's never are.
        "set -e; apt-get -o Acquire::Check-Valid-Until=false update -qq; "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
        "python3 python3-venv >/dev/null; "
        # PEP 668: the distribution's Python refuses a plain pip install
        "test -e /usr/lib/python3*/EXTERNALLY-MANAGED; "
        "cp -a /src /work && cd /work && rm -rf .venv && "
        "IMAGEFACTORY_SETUP_VENV_ONLY=1 bash scripts/setup-test-env.sh && "
        ".venv/bin/imagefactory list >/dev/null && "
        "grep -qx 'home = /usr/bin' .venv/pyvenv.cfg && echo SETUP-OK"
    )
    try:
        proc = subprocess.run(
            ["docker", "run", "--rm", "--name", name, "-v", f"{REPO}:/src:ro", *ca,
             base, "bash", "-c", script],
            capture_output=True, text=True, timeout=900)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SETUP-OK" in proc.stdout
