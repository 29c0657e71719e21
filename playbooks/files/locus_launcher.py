# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``locus`` command for users of the installed collection (a launcher).

``ansible-playbook locus.infra.install_cli`` writes this file as an executable ``locus`` whose
first line is the Python that runs Ansible. It finds locus.infra the way Ansible does - the
configured collection search path (ANSIBLE_COLLECTIONS_PATH, ``collections_path`` in
ansible.cfg, then Python's sys.path) - and runs the collection's CLI, so upgrading or moving
the collection needs no new launcher. Exit 2 with one line on standard error when it cannot.
"""

import sys

EXIT_USAGE = 2


def _fail(msg):
    sys.stderr.write("locus: error: %s\n" % msg)
    return EXIT_USAGE


def main():
    try:
        from ansible import constants as C
        from ansible.plugins.loader import init_plugin_loader
    except ImportError as exc:
        return _fail("Ansible (ansible-core) cannot be imported by %s (%s); rerun "
                     "`ansible-playbook locus.infra.install_cli` with the Ansible you use" % (sys.executable, exc))
    init_plugin_loader()  # the collection loader over Ansible's configured search path
    try:
        from ansible_collections.locus.infra.plugins.plugin_utils import _cli
    except ImportError as exc:
        missing = getattr(exc, "name", "") or ""
        if missing == "ansible_collections" or missing.startswith("ansible_collections.locus"):
            paths = ":".join(C.COLLECTIONS_PATHS) or "(none)"
            return _fail("the collection locus.infra is not installed in Ansible's collection search path %s "
                         "(install it with `ansible-galaxy collection install`, or set ANSIBLE_COLLECTIONS_PATH)" % paths)
        return _fail("locus.infra needs the Python package %r, which %s cannot import: "
                     "python3 -m pip install -r requirements.txt (in the collection)" % (missing or str(exc), sys.executable))
    return _cli.main()


if __name__ == "__main__":
    sys.exit(main())
