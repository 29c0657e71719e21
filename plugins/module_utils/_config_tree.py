# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A daemon's configuration as one tree of files: the part nginx_tree and bird_tree share.

Private API of the collection (may change without notice). Runs on the managed host (shipped
with ``locus.infra.nginx_tree`` and ``locus.infra.bird_tree``); standard library only.

The tree is the main file (``nginx.conf``, ``bird.conf``) plus one directory owned entirely by
the caller (``locus/``) below the configuration directory, every path relative to that
directory. Here: the desired files (:class:`Entry`, :func:`desired`), reading and comparing the
live tree (:func:`read_live`, :func:`compare`), the one file writer (:func:`write_entry`, used
for a fresh staging directory and for replacing live files in place alike) and the per-host
lock, and the modules' ``main()`` (:func:`run_module`). The transactions themselves (nginx's reload and probe, BIRD's undo timer) stay in
``_nginx_tree`` and ``_bird_tree``.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import os
import stat
import tempfile


class TreeError(Exception):
    """A failure with the stage it happened in and extra result keys."""

    def __init__(self, msg, stage, **extra):
        super().__init__(msg)
        self.stage = stage
        self.extra = extra


SECRET_MARK = "(secret content not shown, sha256 {digest})\n"  # noqa: S105 - a placeholder, not a secret


# ------------------------------------------------------------------ the desired tree -----------
class Entry:
    """One desired file: path relative to the configuration directory, bytes, mode, group."""

    def __init__(self, path, content, mode, group=None, secret=False):
        self.path = path
        self.content = content if isinstance(content, bytes) else content.encode("utf-8")
        self.mode = mode
        self.group = group
        self.secret = secret

    def digest(self):
        return hashlib.sha256(self.content).hexdigest()

    def text(self):
        if self.secret:
            return SECRET_MARK.format(digest=self.digest()[:16])
        return self.content.decode("utf-8", "replace")


def parse_mode(value, default):
    if value is None or value == "":
        return default
    if isinstance(value, int):
        return value
    return int(str(value), 8)


def tree_name(value):
    """The option ``tree``: one directory name inside the configuration directory."""
    tree = value.strip("/")
    if not tree or "/" in tree or tree.startswith("."):
        raise TreeError(f"tree must be one directory name inside conf_dir, got {value!r}", "validate")
    return tree


def check_relpath(path, main_file, tree):
    """A desired path must be the main file or lie inside the tree; no escapes."""
    norm = os.path.normpath(path)
    if norm.startswith("/") or norm.startswith("..") or norm != path.rstrip("/"):
        raise ValueError(f"{path!r} must be a plain path relative to the configuration directory")
    if norm != main_file and not norm.startswith(tree + "/"):
        raise ValueError(f"{path!r} is neither {main_file} nor inside {tree}/ (the tree this module owns)")
    return norm


def group_id(name):
    if name is None:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ValueError(f"group {name!r} does not exist on this host") from None


def desired(items, main_file, tree):
    """The desired tree from ``(where, Entry)`` pairs (``where`` names the option item, e.g.
    ``files[2]``): each path checked and given once, the main file among them. A ValueError
    raised while ``items`` is produced (a bad mode, an unknown group) fails the same way.
    Raises TreeError (stage ``validate``)."""
    entries, seen = [], set()
    try:
        for where, entry in items:
            try:
                entry.path = check_relpath(entry.path, main_file, tree)
            except ValueError as exc:
                raise TreeError(f"{where}: {exc}", "validate") from None
            if entry.path in seen:
                raise TreeError(f"{where}: {entry.path} is given twice", "validate")
            seen.add(entry.path)
            entries.append(entry)
    except ValueError as exc:
        raise TreeError(str(exc), "validate") from None
    if main_file not in seen:
        raise TreeError(f"files must include the main file {main_file}", "validate")
    return entries


# ------------------------------------------------------------------ reading the live tree -----
def read_live(conf_dir, main_file, tree):
    """``{relpath: (bytes, mode, gid)}`` of the live main file and every file in the tree."""
    live = {}
    main = os.path.join(conf_dir, main_file)
    if os.path.isfile(main):
        live[main_file] = _read(main)
    root = os.path.join(conf_dir, tree)
    if os.path.isdir(root):
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                full = os.path.join(dirpath, name)
                live[os.path.relpath(full, conf_dir)] = _read(full)
    return live


def _read(path):
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return (("symlink -> " + os.readlink(path)).encode("utf-8"), -1, st.st_gid)
    with open(path, "rb") as f:
        return (f.read(), stat.S_IMODE(st.st_mode), st.st_gid)


def compare(desired_entries, live, conf_dir):
    """Differences between the desired entries and the live files.

    Returns ``(changes, diffs)``: changes as ``[{path, action}]`` (added, changed, removed)
    and Ansible diff entries with the live paths as headers (secrets shown by digest only).
    """
    changes, diffs = [], []
    wanted = {e.path: e for e in desired_entries}
    for path in sorted(set(wanted) | set(live)):
        full = os.path.join(conf_dir, path)
        entry = wanted.get(path)
        old = live.get(path)
        if entry is None:
            changes.append({"path": full, "action": "removed"})
            diffs.append({"before_header": full, "after_header": full, "before": _old_text(old, secret=_secret_path(path)),
                          "after": ""})
            continue
        gid = group_id(entry.group)
        if old is None:
            changes.append({"path": full, "action": "added"})
            diffs.append({"before_header": full, "after_header": full, "before": "", "after": entry.text()})
            continue
        content_differs = old[0] != entry.content
        meta_differs = old[1] != entry.mode or (gid is not None and old[2] != gid)
        if content_differs or meta_differs:
            what = []
            if content_differs:
                what.append("content")
            if old[1] != entry.mode:
                what.append(f"mode {oct(old[1]) if old[1] >= 0 else 'symlink'} -> {oct(entry.mode)}")
            if gid is not None and old[2] != gid:
                what.append(f"group -> {entry.group}")
            changes.append({"path": full, "action": "changed", "what": what})
            before = _old_text(old, secret=entry.secret)
            after = entry.text()
            if not content_differs:
                before += f"# mode {oct(old[1])}\n"
                after += f"# mode {oct(entry.mode)}{', group ' + entry.group if entry.group else ''}\n"
            diffs.append({"before_header": full, "after_header": full, "before": before, "after": after})
    return changes, diffs


def differences(desired_entries, live, conf_dir, diff=False):
    """The module result's ``changed``, ``changes`` and (with ``diff``, when any) ``diff`` of
    :func:`compare`. Raises TreeError (stage ``validate``) for a group unknown on the host."""
    try:
        changes, diffs = compare(desired_entries, live, conf_dir)
    except ValueError as exc:
        raise TreeError(str(exc), "validate") from None
    result = {"changed": bool(changes), "changes": changes}
    if diff and diffs:
        result["diff"] = diffs
    return result


def _secret_path(path):
    return path.endswith((".key", ".htpasswd"))


def _old_text(old, secret):
    if old is None:
        return ""
    if secret:
        return SECRET_MARK.format(digest=hashlib.sha256(old[0]).hexdigest()[:16])
    return old[0].decode("utf-8", "replace")


def relabel(text, stage, conf_dir):
    """A daemon's messages about a staged file, with the live path a human will look for."""
    return text.replace(stage.rstrip("/") + "/", conf_dir.rstrip("/") + "/")


# ------------------------------------------------------------------ writing -------------------
def write_entry(path, content, mode, group=None, sync=True):
    """Write ``content`` (bytes) to ``path`` with ``mode`` and (when given) ``group``, owner root.

    The one file writer of both trees: a temporary file in the same directory gets the content,
    group and mode first and is then renamed over ``path``, so a reader (the daemon, a reload)
    sees the old file or the whole new one - never a partial file or a secret readable for a
    moment under a wider mode. On any failure the temporary file is removed and ``path`` is
    as it was.

    The file's data is flushed to disk before the rename and the directory after it, so after a
    power cut ``path`` is the old file or the whole new one - not an empty file (the rename
    reached the disk before the data) nor the old one back after the module reported a change.
    ``sync=False`` leaves the directory's flush to the caller (:func:`write_tree` flushes each
    directory once, after all its files).
    """
    gid = group_id(group)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".locus-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        if gid is not None:
            os.chown(tmp, 0, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    if sync:
        sync_dir(directory)


def sync_dir(path):
    """Flush ``path``'s entries (a rename, a new file) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path, mode, gid=None):
    """``path`` (and any missing parent) as a directory with exactly ``mode`` and group ``gid``."""
    parent = os.path.dirname(path.rstrip("/"))
    if parent and not os.path.isdir(parent):
        make_dir(parent, mode, gid)
    os.makedirs(path, mode=mode, exist_ok=True)
    if gid is not None:
        os.chown(path, 0, gid)
    os.chmod(path, mode)  # exactly the mode, whatever the umask


def write_tree(base, entries, tree, dir_mode, dir_group=None):
    """Write ``entries`` below ``base`` with :func:`write_entry`; the tree's directory and every
    directory created for an entry get ``dir_mode`` and ``dir_group``."""
    gid = group_id(dir_group)
    make_dir(os.path.join(base, tree), dir_mode, gid)
    # Each directory that got a file or a new subdirectory is flushed once at the end (one
    # fsync per file and per directory rather than two per file: ~1.8x faster for 200 files).
    dirs = {os.path.normpath(base)}
    for e in entries:
        full = os.path.join(base, e.path)
        if not os.path.isdir(os.path.dirname(full)):
            make_dir(os.path.dirname(full), dir_mode, gid)
        write_entry(full, e.content, e.mode, e.group, sync=False)
        d = os.path.dirname(os.path.normpath(full))
        while d not in dirs and d.startswith(os.path.normpath(base) + "/"):
            dirs.add(d)
            d = os.path.dirname(d)
    for d in sorted(dirs, key=len, reverse=True):
        sync_dir(d)


# ------------------------------------------------------------------ the per-host lock ----------
class Lock:
    """An exclusive ``flock`` on ``path``: one transaction per tree and host at a time."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# ------------------------------------------------------------------ the module ----------------
def run_module(module, run):
    """The rest of a tree module's ``main()`` once its AnsibleModule is built: ``run(module)``,
    then its result or its :class:`TreeError` (message, ``stage`` and the result so far) out."""
    try:
        result = run(module)
    except TreeError as exc:
        module.fail_json(msg=str(exc), stage=exc.stage, **exc.extra)
    module.exit_json(**result)
