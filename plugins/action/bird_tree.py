# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.bird_tree: the emergency halt check, then the module itself.

The module (plugins/modules/bird_tree.py) does all the work on the managed host; this
wrapper only refuses to run it while locus.infra is halted (see plugins/plugin_utils/_action.py).
"""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils._action import HaltGuardedModule


class ActionModule(HaltGuardedModule):
    pass
