# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which values Ansible knows to be secret in this run, learnt for the audit trail.

Private API of the collection (may change without notice). Controller-only.

Patterns cannot recognise ``s3cret`` as a password; Ansible can: it decrypted it from a vault,
or it sits under a secret-named variable or argument, or a module declared the argument
``no_log``. Everything found here goes to :func:`_redact.remember`, and the state store masks
those values literally in every record it writes (task names, subjects, messages, results).
Worker processes are forked from the controller, so an action plugin inherits what the audit
callback learnt before its task started, and adds what its own task variables and arguments show.

Only raw values are read: nothing is templated here (templating a variable can run a lookup).
"""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils import _redact

try:  # ansible-core >= 2.19: vaulted values are EncryptedString, or str tagged VaultedValue
    from ansible._internal._datatag._tags import VaultedValue
except ImportError:  # pragma: no cover - older ansible-core
    VaultedValue = None
try:
    from ansible._internal._datatag._tags import SourceWasEncrypted
except ImportError:  # pragma: no cover - older ansible-core
    SourceWasEncrypted = None
try:
    from ansible.parsing.vault import EncryptedString
except ImportError:  # pragma: no cover - older ansible-core
    EncryptedString = None

NO_LOG_PLACEHOLDER = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
# Magic variables that repeat other variables (hostvars, vars) or are never secrets; walking
# them would cost time for nothing.
_SKIP = frozenset(("hostvars", "vars", "groups", "group_names", "omit", "ansible_facts", "play_hosts", "ansible_play_hosts",
                   "ansible_play_hosts_all", "ansible_play_batch", "ansible_play_role_names", "ansible_role_names",
                   "ansible_dependent_role_names", "role_names", "environment", "inventory_dir", "inventory_file",
                   "playbook_dir", "ansible_config_file", "ansible_collection_name", "ansible_search_path"))
MAX_DEPTH = 12


def vault_plaintext(value):
    """The decrypted text of a vaulted value (EncryptedString, AnsibleVaultEncryptedUnicode, VaultedValue-tagged), else None."""
    try:
        if EncryptedString is not None and isinstance(value, EncryptedString):
            return str(value)
        if VaultedValue is not None and isinstance(value, str) and VaultedValue.is_tagged_on(value):
            return str(value)
        if type(value).__name__ == "AnsibleVaultEncryptedUnicode":  # ansible-core < 2.19
            return str(value.data)
    except Exception:  # noqa: BLE001 - no vault secret to decrypt it with: nothing to learn
        return None
    return None


def _is_template(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def secrets_in(value, secret=False, depth=0):
    """Every string inside ``value`` that is secret: vaulted, or under a secret-named key (``secret``)."""
    found = []
    stack = [(value, secret, depth)]
    while stack:
        value, secret, depth = stack.pop()
        if depth > MAX_DEPTH:
            continue
        plain = vault_plaintext(value)
        if plain is not None:
            found.append(plain)
            continue
        try:
            if isinstance(value, dict):
                for k, v in value.items():
                    stack.append((v, secret or _redact.is_secret_key(k), depth + 1))
            elif isinstance(value, (list, tuple, set, frozenset)):
                stack.extend((v, secret, depth + 1) for v in value)
            elif secret and isinstance(value, (str, bytes)) and not _is_template(value):
                found.append(value)
            elif secret and isinstance(value, (int, float)) and not isinstance(value, bool):
                found.append(str(value))
        except Exception:  # noqa: BLE001,S112 - a lazy value that cannot be read holds nothing we can learn
            continue
    return found


def learn_vars(variables):
    """Learn the secrets among ``variables`` (raw, as the VariableManager or an action plugin holds them)."""
    found = []
    try:
        items = list(variables.items())
    except Exception:  # noqa: BLE001 - not a mapping we can read
        return
    for key, value in items:
        if key in _SKIP or (isinstance(key, str) and key.startswith("ansible_") and not _redact.is_secret_key(key)):
            continue
        found.extend(secrets_in(value, _redact.is_secret_key(key)))
    _redact.remember(*found)


def learn_loader(loader):
    """Learn every value of the files the loader decrypted whole (vars files encrypted with ansible-vault)."""
    cache = getattr(loader, "_FILE_CACHE", None)
    if SourceWasEncrypted is None or not isinstance(cache, dict):
        return
    for data in list(cache.values()):
        try:
            if SourceWasEncrypted.is_tagged_on(data):
                _redact.remember(*_strings(data))
        except Exception:  # noqa: BLE001,S112 - a cache entry we cannot read holds nothing we can learn
            continue


# no_log options of modules whose action plugin drops them before the module runs, so the
# module's invocation neither shows nor masks them.
_DROPPED_NO_LOG = {name: ("content",) for name in ("ansible.builtin.copy", "ansible.legacy.copy", "copy")}


def learn_args(args, masked=None, no_log=False, action=None):
    """Learn the secrets among a task's ``args``.

    ``masked`` is the module's own view of them (``invocation.module_args``), where its
    ``no_log`` options read ``VALUE_SPECIFIED_IN_NO_LOG_PARAMETER``: their raw values are secret.
    ``no_log`` (the whole task): every value under a secret-named key, as always; nothing else,
    the record of such a task holds no arguments at all. ``action``: the resolved module name.
    Credential-shaped values (a URL's password, a bearer token ...) are learnt when the arguments
    are redacted (``_redact.redact(args, learn=True)``).
    """
    if not isinstance(args, dict):
        return
    found = secrets_in(args)
    if isinstance(masked, dict):
        found.extend(_no_log_values(args, masked))
        found.extend(v for k in _DROPPED_NO_LOG.get(action, ()) if k in args and masked.get(k) != args[k] for v in _strings(args[k]))
    del no_log
    _redact.remember(*found)


def _no_log_values(raw, masked, depth=0):
    out = []
    if depth > MAX_DEPTH:
        return out
    if isinstance(masked, str) and NO_LOG_PLACEHOLDER in masked and raw != masked:
        out.extend(v for v in _strings(raw) if v != NO_LOG_PLACEHOLDER)
    elif isinstance(masked, dict) and isinstance(raw, dict):
        for k, v in masked.items():
            if k in raw:
                out.extend(_no_log_values(raw[k], v, depth + 1))
    elif isinstance(masked, list) and isinstance(raw, list):
        for r, m in zip(raw, masked, strict=False):
            out.extend(_no_log_values(r, m, depth + 1))
    return out


def _strings(value):
    if isinstance(value, (str, bytes)):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return [str(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def learn_result(result):
    """Learn the secrets a task result reveals: facts it set (set_fact, include_vars) under secret-named keys, vaulted values."""
    if not isinstance(result, dict):
        return
    found = []
    for key in ("ansible_facts", "add_host"):
        if isinstance(result.get(key), dict):
            found.extend(secrets_in(result[key]))
    _redact.remember(*found)
