# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store's SQL for the guard: HALT and APPROVAL records, the halt row, the approvals used.

Private API of the collection (may change without notice).

Only the store writes SQL. The guard (plugin_utils/guard/_halt.py, _guard.py) derives the halt
and the single use of approvals from what these methods return, and checks every record as a
link of the hash chain. :class:`GuardReads` is mixed into both the store (a read of its own)
and a write transaction (:class:`_store.Transaction`), so a check the guard makes inside a
transaction and the write that follows it stay one atomic step on both engines (the writer
lock: SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock): a single-use approval cannot
be used twice by two runs racing. :class:`GuardWrites` exists only on a transaction.
"""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils.store import _audit

_COLUMNS = "position, tag, ts, subject, data, prev_hash, hash"
# The exact predicates of the partial indexes of migration 5: written as constants, never as
# parameters, so that both engines use those indexes.
_GUARD_TAGS = {"HALT": "tag LIKE 'LOCUS-HALT%'", "APPROVAL": "tag LIKE 'LOCUS-APPROVAL%'"}


class GuardReads:
    """Reads for the guard through ``self.query(sql, params)`` (a store's or a write transaction's)."""

    def query(self, sql, params=()):
        # The mixin's one requirement, declared so it is visible: Store and Transaction define
        # their own query (the engine's placeholders, the writer lock); this is never reached.
        raise NotImplementedError

    def audit_record(self, tag):
        """The audit row of ``tag`` as a dict (:func:`_audit.row_dict`), or None; not checked against the chain."""
        rows = self.query(f"SELECT {_COLUMNS} FROM locus_audit WHERE tag = ?", (tag,))  # noqa: S608 - constant columns
        return _audit.row_dict(rows[0]) if rows else None

    def guard_records(self, action, ref=None, before=None, limit=50):
        """One page of ``action`` (HALT or APPROVAL) rows as dicts, newest first, at most ``limit``, below
        position ``before`` if given; with ``ref`` only those whose data holds ``"ref":"<ref>"`` (a cheap
        prefilter: the caller checks the record's own ``ref``). Not checked against the chain."""
        sql = f"SELECT {_COLUMNS} FROM locus_audit WHERE {_GUARD_TAGS[action]}"  # noqa: S608 - constants
        params = []
        if ref is not None:
            sql += " AND data LIKE ?"
            params.append(f"%{_audit.canonical_json({'ref': ref})[1:-1]}%")
        if before is not None:
            sql += " AND position < ?"
            params.append(before)
        rows = self.query(sql + " ORDER BY position DESC LIMIT ?", (*params, int(limit)))
        return [_audit.row_dict(r) for r in rows]

    def halt_row(self):
        """``(halted, tag, epoch)`` of the table ``locus_guard_halt``, or None when its one row was deleted."""
        rows = self.query("SELECT halted, tag, epoch FROM locus_guard_halt WHERE id = 1")
        return (bool(rows[0][0]), rows[0][1], int(rows[0][2])) if rows else None

    def approvals_used(self):
        """The REF-tags of the guard decisions (and halts) whose approval has been used."""
        return {r[0] for r in self.query("SELECT ref FROM locus_guard_approval_used")}

    def approval_used(self, ref):
        """``(used_at, approval_tag)`` when the approval of ``ref`` has been used, else None."""
        rows = self.query("SELECT used_at, approval_tag FROM locus_guard_approval_used WHERE ref = ?", (ref,))
        return (rows[0][0], rows[0][1]) if rows else None


class GuardWrites:
    """The guard's writes, inside a write transaction (through ``self.execute``)."""

    def execute(self, sql, params=()):
        # The mixin's one requirement, declared so it is visible: Transaction defines execute
        # (inside its writer lock); this is never reached.
        raise NotImplementedError

    def set_halt(self, tag, reason, since, user, epoch):
        """Mark locus.infra halted by the HALT record ``tag`` in halt ``epoch``."""
        self.execute(
            "UPDATE locus_guard_halt SET halted = 1, tag = ?, reason = ?, since = ?, by_user = ?, epoch = ? WHERE id = 1",
            (tag, reason, since, user, epoch),
        )

    def clear_halt(self):
        """Mark the halt resumed (its tag and epoch stay: the next halt increments the epoch)."""
        self.execute("UPDATE locus_guard_halt SET halted = 0 WHERE id = 1")

    def mark_approval_used(self, ref, used_at, approval_tag, method):
        """Record that the approval of ``ref`` was used (by the APPROVAL record ``approval_tag``).

        ``ref`` is the table's primary key: a second use fails the transaction even if a check was missed.
        """
        self.execute(
            "INSERT INTO locus_guard_approval_used (ref, used_at, approval_tag, method) VALUES (?, ?, ?, ?)",
            (ref, used_at, approval_tag, method),
        )
