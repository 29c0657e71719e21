"""Huge input to the ``locus`` CLI fails fast and clearly: one line, exit 2, memory bounded.

Each command gets a 2 GiB file (sparse: free on disk) while its address space is limited to
1 GiB, so reading the whole input would fail with MemoryError (or be killed) instead of the
one-line error. Both engines: ``resume`` reaches the store before it reads the token.
"""

from __future__ import annotations

import os
import resource
import subprocess

import pytest

from locus_testlib import VENV_BIN

HUGE = 2 << 30
ADDRESS_SPACE = 1 << 30


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _locus(env, *args, stdin=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUS_")}
    full_env.update(env)
    return subprocess.run([str(VENV_BIN / "locus"), *args], env=full_env, stdin=stdin, capture_output=True, text=True,
                          check=False, timeout=300, preexec_fn=_limited)  # noqa: PLW1509 - single-threaded test process


@pytest.fixture
def huge(tmp_path):
    path = tmp_path / "huge"
    with open(path, "wb") as f:
        f.truncate(HUGE)  # 2 GiB of NUL bytes, none on disk
    return path


def _one_line_error(proc, *expected):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.startswith("locus: error: ") and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    for text in expected:
        assert text in proc.stderr, proc.stderr


def test_a_huge_token_on_stdin(store_env, huge):
    env = dict(store_env, LOCUS_APPROVAL_KEY="huge-input-test-approval-key")
    assert _locus(env, "halt", "--reason", "huge token test").returncode == 0
    with open(huge, "rb") as f:
        proc = _locus(env, "resume", "--token", "-", stdin=f)
    _one_line_error(proc, "approval token", "at most")


def test_a_huge_head_file(store_env, huge):
    _one_line_error(_locus(store_env, "audit", "verify", "--head", str(huge)), str(huge), "at most")


def test_a_huge_line_in_an_export(store_env, huge):
    _one_line_error(_locus(store_env, "audit", "verify", "--file", str(huge)), f"{huge}:1", "at most")
