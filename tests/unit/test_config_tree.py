"""The configuration tree both nginx_tree and bird_tree own (module_utils._config_tree): the one
file writer, the directories it makes, and the checks of the desired files. Real files in a
temporary directory; the tests run as root (as the modules do), so owners and groups are real."""

from __future__ import annotations

import grp
import os
import stat

import pytest

from ansible_collections.locus.infra.plugins.module_utils import _config_tree as ct

GROUP = "nogroup"  # present on every Debian host


def _meta(path):
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, grp.getgrgid(st.st_gid).gr_name


def test_write_entry_replaces_a_file_whole_with_its_mode_and_group(tmp_path):
    path = tmp_path / "bird.conf"
    path.write_text("old\n")
    os.chmod(path, 0o644)
    reader = open(path, "rb")  # noqa: SIM115 - held open across the replace on purpose
    try:
        before = os.stat(path).st_ino
        ct.write_entry(str(path), b"new\n", 0o640, GROUP)
        assert reader.read() == b"old\n"  # a reader of the old file still sees all of it: a rename, not a rewrite
    finally:
        reader.close()
    assert path.read_bytes() == b"new\n" and os.stat(path).st_ino != before
    assert _meta(path) == (0o640, 0, GROUP)
    assert sorted(os.listdir(tmp_path)) == ["bird.conf"]


def test_write_entry_flushes_the_file_before_the_rename_and_the_directory_after_it(tmp_path, monkeypatch):
    # What a power cut would test: the data on disk before the rename (else an empty file can
    # survive it), and the rename on disk before the module reports it. Each fsync is recorded
    # with what its descriptor is and what ``path`` held at that moment, then really done.
    path = tmp_path / "bird.conf"
    path.write_bytes(b"old\n")
    synced, real_fsync = [], os.fsync

    def recording_fsync(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), path.read_bytes()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    ct.write_entry(str(path), b"new\n", 0o644)
    assert len(synced) == 2
    (file_synced, held_then), (dir_synced, held_after) = synced
    assert os.path.dirname(file_synced) == str(tmp_path) and os.path.basename(file_synced).startswith(".locus-")
    assert held_then == b"old\n"  # the temporary file, before the rename
    assert dir_synced == str(tmp_path) and held_after == b"new\n"  # the directory, after it


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "secrets.conf"
    path.write_bytes(b"define password = \"old\";\n")
    os.chmod(path, 0o600)
    with pytest.raises(TypeError):
        ct.write_entry(str(path), "not bytes", 0o640)  # fails after the temporary file exists
    assert path.read_bytes() == b"define password = \"old\";\n" and _meta(path)[0] == 0o600
    assert os.listdir(tmp_path) == ["secrets.conf"]


def test_an_unknown_group_is_named_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match="group 'no-such-group-x' does not exist on this host"):
        ct.write_entry(str(tmp_path / "a.conf"), b"x", 0o640, "no-such-group-x")
    assert os.listdir(tmp_path) == []


def test_write_tree_makes_directories_with_exactly_its_mode_and_group(tmp_path):
    old = os.umask(0o077)  # the modes must not depend on the caller's umask
    try:
        base = tmp_path / "etc"
        (base / "locus").mkdir(parents=True, mode=0o700)
        ct.write_tree(str(base), [ct.Entry("main.conf", "main\n", 0o644),
                                  ct.Entry("locus/a/b/deep.conf", "deep\n", 0o640, group=GROUP)], "locus", 0o750, GROUP)
    finally:
        os.umask(old)
    for d in ("locus", "locus/a", "locus/a/b"):
        assert _meta(base / d) == (0o750, 0, GROUP), d
    assert _meta(base / "locus/a/b/deep.conf") == (0o640, 0, GROUP)
    assert (base / "main.conf").read_text() == "main\n" and _meta(base / "main.conf")[0] == 0o644


def test_write_tree_flushes_every_file_and_each_directory_once_after_its_files(tmp_path, monkeypatch):
    base = tmp_path / "etc"
    base.mkdir()
    synced, real_fsync = [], os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    ct.write_tree(str(base), [ct.Entry("main.conf", "main\n", 0o644), ct.Entry("locus/a.conf", "a\n", 0o644),
                              ct.Entry("locus/b.conf", "b\n", 0o644), ct.Entry("locus/x/y/c.conf", "c\n", 0o644)],
                  "locus", 0o750)
    files = [s for s in synced if os.path.basename(s).startswith(".locus-")]
    dirs = synced[len(files):]
    assert len(files) == 4 and synced[:4] == files  # every file's data first, ...
    assert sorted(dirs) == sorted(str(base / d) for d in ("", "locus", "locus/x", "locus/x/y"))  # ... then each directory once
    assert dirs.index(str(base / "locus/x/y")) < dirs.index(str(base / "locus/x")) < dirs.index(str(base))


def test_desired_names_the_option_item_of_every_problem():
    def entries(*paths):
        return [(f"files[{n}]", ct.Entry(p, "x", 0o644)) for n, p in enumerate(paths)]

    assert [e.path for e in ct.desired(entries("nginx.conf", "locus/a.conf"), "nginx.conf", "locus")] == [
        "nginx.conf", "locus/a.conf"]
    for paths, message in [
        (("nginx.conf", "locus/../../etc/passwd"), r"files\[1\]: 'locus/../../etc/passwd' must be a plain path"),
        (("nginx.conf", "sites-enabled/x"), r"files\[1\]: 'sites-enabled/x' is neither nginx.conf nor inside locus/"),
        (("nginx.conf", "locus/a.conf", "locus/a.conf"), r"files\[2\]: locus/a.conf is given twice"),
        (("locus/a.conf",), "files must include the main file nginx.conf"),
    ]:
        with pytest.raises(ct.TreeError, match=message) as err:
            ct.desired(entries(*paths), "nginx.conf", "locus")
        assert err.value.stage == "validate"


@pytest.mark.parametrize("value", ["", "/", "a/b", ".hidden", "../x"])
def test_the_tree_is_one_plain_directory_name(value):
    with pytest.raises(ct.TreeError, match=f"tree must be one directory name inside conf_dir, got {value!r}"):
        ct.tree_name(value)
    assert ct.tree_name("/locus/") == "locus"
