#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection laid out as ansible_collections/locus/infra
# (ansible-test needs that path), with this checkout's .venv Python.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/locus-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/locus/infra"
mkdir -p "$dest"
# The files git would ship: tracked plus untracked-but-not-ignored.
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) | (cd "$repo" && rsync -a --from0 --files-from=- ./ "$dest/")
# ansible-test bootstraps pip in its sanity venvs with get-pip.py from ci-files.testing.ansible.com,
# which this network cannot reach. The same job, offline: ensurepip, then pip installs the pins.
pip_version=$("$repo/.venv/bin/python" -c 'from ansible_test._internal.python_requirements import get_venv_packages as g; from types import SimpleNamespace as N; print(g(N(version="3.11"))["pip"])')
shim="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -s "$shim" ]; then
  mkdir -p "$(dirname "$shim")"
  cat > "$shim" <<'PY'
"""Offline stand-in for get-pip.py, written by locus.infra tests/sanity.sh."""
import subprocess
import sys

# In a child: ensurepip.bootstrap() would point PIP_CONFIG_FILE at /dev/null for us too.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
PY
fi
cd "$dest"
git init -q && git add -A  # ansible-test sanity looks at git's file list
exec "$repo/.venv/bin/ansible-test" sanity --python 3.11 --color no "$@"
