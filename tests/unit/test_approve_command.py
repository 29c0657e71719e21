"""The guard's approve_command is a command a human can paste into a shell as it is."""

from __future__ import annotations

import shlex

from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard


def test_approve_command_is_pasteable_with_spaces_in_paths():
    """The shell splits the printed command into exactly the intended arguments."""
    class _Store:
        engine, path = "sqlite", "/tmp/state dir/locus.db"

    class _Policy:
        source = "/etc/locus/my policy.yml"

    cmd = _guard.approve_command(_Store(), "LOCUS-VALIDATE20260101-001", _Policy())
    assert shlex.split(cmd) == ["locus", "--state-dir", "/tmp/state dir", "approve", "LOCUS-VALIDATE20260101-001",
                                "--policy", "/etc/locus/my policy.yml"]
    _Store.engine = "postgresql"  # its URL holds a password: never printed
    assert shlex.split(_guard.approve_command(_Store(), "T", _Policy()))[:3] == ["locus", "approve", "T"]
