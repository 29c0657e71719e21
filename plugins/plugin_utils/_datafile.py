# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one strict YAML loader for locus.infra's data files (the guard policy, the price table).

Private API of the collection (may change without notice). Controller-only.

Strict where ``yaml.safe_load`` is lenient: a duplicate key is an error naming both lines
(PyYAML silently keeps the last one, so a second ``approval:`` or ``claude-sonnet-5-5:`` would
win unseen); the text must be UTF-8; the top level must be a mapping. Every error is one line
``<what> <path> line L column C: <reason>``.
"""

from __future__ import annotations

import hashlib


class DataFileError(Exception):
    """A data file cannot be used; the message names the file, the line and the reason."""


_LOADER = None


def _unique_key_loader():
    global _LOADER
    if _LOADER is None:
        import yaml  # controller side only: ansible-core ships PyYAML

        class UniqueKeyLoader(yaml.SafeLoader):
            pass

        def construct_mapping(loader, node, deep=False):
            seen = {}
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` - keys written next to it override the merged ones
                key = loader.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader reports it below
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r} (first at line {first + 1})", key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line
            return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

        UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
        _LOADER = UniqueKeyLoader
    return _LOADER


def loads(raw, where):
    """The mapping in the YAML bytes ``raw``; ``where`` (``policy /etc/x.yml``) starts each error."""
    import yaml

    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DataFileError(f"{where}{at}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise DataFileError(f"{where}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load(path, what):
    """``(mapping, sha256 of the bytes)`` of the YAML data file at ``path``.

    ``what`` names the kind of file in errors (``policy``, ``price table``)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataFileError(f"{what} {path}: cannot read it: {exc.strerror or exc}") from None
    return loads(raw, f"{what} {path}"), hashlib.sha256(raw).hexdigest()
