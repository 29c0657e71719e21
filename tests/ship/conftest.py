"""The collection as its users get it: built tarball, installed elsewhere, fresh Python.

These tests run last in ``make test`` (``make ship``): they build the tarball from the tree the
rest of the suite has just run in (with its by-products lying around), install it with
``ansible-galaxy collection install`` into an empty path, introspect it with ansible-builder,
and create a fresh virtualenv with ansible-core plus the introspected requirements, as an
execution environment build would (minus the image). Everything a user runs happens in that
virtualenv, from a directory outside the repository, with a HOME of its own (no ansible.cfg,
no ~/.ansible) and ANSIBLE_COLLECTIONS_PATH naming only the install path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from locus_testlib import REPO, VENV_BIN

GALAXY = (REPO / "galaxy.yml").read_text()
VERSION = next(line.split(":", 1)[1].strip() for line in GALAXY.splitlines() if line.startswith("version:"))
TARBALL_NAME = f"locus-infra-{VERSION}.tar.gz"
# ansible-core of the development pins (pyproject.toml): what the fresh virtualenv gets.
ANSIBLE_CORE = next(
    line.strip().strip('",') for line in (REPO / "pyproject.toml").read_text().splitlines() if line.strip().startswith('"ansible-core==')
)
SITE_PACKAGES = Path(next(p for p in sys.path if p.endswith("site-packages") and p.startswith(str(VENV_BIN.parent))))


def run(cmd, *, env=None, cwd=None, check=True, timeout=600):
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def clean_env(**extra):
    """The environment of a user outside this repository (no ANSIBLE_*, LOCUS_* of the suite)."""
    keep = ("LANG", "LC_ALL", "TERM", "TMPDIR", "UV_CACHE_DIR", "LOCUS_CACHE_DIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
            "PIP_CERT", "UV_NATIVE_TLS", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY")
    env = {k: v for k, v in os.environ.items() if k in keep}
    # uv reuses the machine's wheel cache (make exports UV_CACHE_DIR; a bare pytest run may not)
    env.setdefault("UV_CACHE_DIR", os.path.join(os.environ.get("LOCUS_CACHE_DIR", "/var/cache/locus"), "uv"))
    env.update(PATH="/usr/bin:/bin", PYTHONWARNINGS="ignore", ANSIBLE_NOCOLOR="1")
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def ship_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ship")


@pytest.fixture(scope="session")
def tarball(ship_dir):
    """The tarball built in the repository as it is now (after the rest of the suite)."""
    out = ship_dir / "dist"
    run([VENV_BIN / "ansible-galaxy", "collection", "build", "--output-path", out, "--force"], cwd=REPO)
    path = out / TARBALL_NAME
    assert path.is_file(), f"ansible-galaxy built no {TARBALL_NAME} in {out}"
    return path


@pytest.fixture(scope="session")
def installed(ship_dir, tarball):
    """``ansible-galaxy collection install`` of the tarball into an empty path.

    Its dependencies (ansible.posix, ansible.utils) are already installed where Ansible's own
    package keeps them; ``--offline`` finds them there instead of asking a Galaxy server.
    """
    path = ship_dir / "collections"
    env = clean_env(HOME=str(ship_dir / "home-install"), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
                    ANSIBLE_COLLECTIONS_PATH=f"{path}:{SITE_PACKAGES}")
    proc = run([VENV_BIN / "ansible-galaxy", "collection", "install", "--offline", tarball, "-p", path], env=env, cwd=ship_dir)
    assert f"Installing 'locus.infra:{VERSION}'" in proc.stdout, proc.stdout
    root = path / "ansible_collections" / "locus" / "infra"
    assert json.loads((root / "MANIFEST.json").read_text())["collection_info"]["version"] == VERSION
    return path


@pytest.fixture(scope="session")
def introspected(ship_dir, installed):
    """``ansible-builder introspect`` of the install path: the Python requirements file."""
    pip_file, bindep_file = ship_dir / "introspect-requirements.txt", ship_dir / "introspect-bindep.txt"
    run([VENV_BIN / "ansible-builder", "introspect", "--sanitize", installed, "--write-pip", pip_file, "--write-bindep", bindep_file],
        cwd=ship_dir)
    return pip_file, bindep_file


@pytest.fixture(scope="session")
def ee_venv(ship_dir, introspected):
    """A fresh virtualenv: ansible-core and the introspected requirements, from the uv cache."""
    venv = ship_dir / "ee"
    uv = VENV_BIN / "uv"
    run([uv, "venv", "-q", "--python", Path(sys.executable).resolve(), venv], env=clean_env())
    run([uv, "pip", "install", "-q", "--native-tls", "--python", venv / "bin" / "python", ANSIBLE_CORE, "-r", introspected[0]],
        env=clean_env())
    return venv


@pytest.fixture(scope="session")
def user(ship_dir, installed, ee_venv):
    """Runs commands as a collection user: the fresh virtualenv, a directory and HOME outside the repo."""
    work, home, bin_dir = ship_dir / "work", ship_dir / "home", ship_dir / "bin"
    for d in (work, home):
        d.mkdir(exist_ok=True)

    def _run(*cmd, check=True, **extra_env):
        env = clean_env(**{"HOME": str(home), "PATH": f"{bin_dir}:{ee_venv / 'bin'}:/usr/bin:/bin",
                           "ANSIBLE_COLLECTIONS_PATH": str(installed), **extra_env})
        return run(list(cmd), env=env, cwd=work, check=check)

    _run.work, _run.home, _run.bin, _run.venv, _run.collections = work, home, bin_dir, ee_venv, installed
    return _run
