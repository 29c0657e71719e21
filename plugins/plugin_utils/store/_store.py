# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The locus state store: one interface, two engines.

Private API of the collection (may change without notice).

* SQLite (embedded default): ``$LOCUS_STATE_DIR/locus.db`` (default ``~/.local/state/locus``),
  WAL journal, ``synchronous=FULL``, writers serialised with ``BEGIN IMMEDIATE``.
* PostgreSQL when ``LOCUS_STATE_URL=postgresql://…`` (the shared store for AWX): writers
  serialised with a transaction-scoped advisory lock.

Both engines share one schema, created by the versioned :data:`MIGRATIONS`. Features that
need tables of their own append a migration; the SQL is written once with ``?`` placeholders
and engine differences are spelled out per migration.

A REF-tag is never handed out without its audit record: :meth:`Store.record` allocates the
sequence number and appends the hash-chained record in one transaction, so a crash can lose
neither one without the other, and sequences stay contiguous.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import sqlite3
from urllib.parse import urlsplit

from ansible_collections.locus.infra.plugins.module_utils._retry import WaitTimeout, poll
from ansible_collections.locus.infra.plugins.plugin_utils import _redact
from ansible_collections.locus.infra.plugins.plugin_utils.store import _audit, _guard_state, _refs

DEFAULT_STATE_DIR = "~/.local/state/locus"
DB_NAME = "locus.db"
WRITE_LOCK_TIMEOUT = 120  # seconds a writer waits for another one
# Stable key for pg_advisory_xact_lock: every writer of the chain takes it.
_PG_LOCK_KEY = 0x4C4F435553  # "LOCUS"


class StoreError(Exception):
    """The store cannot be opened or written: the message says what and where."""


class RecordError(StoreError):
    """A record refused before it is written: its subject or data is not valid UTF-8 JSON."""


class Tampered(StoreError):
    """A record or a table of the store does not agree with the hash chain: refuse to go on."""


def chain_problem(query, rec):
    """Why the record ``rec`` (a :func:`_audit.row_dict`) is not a sound link of the hash chain, or None.

    Cheap, local check for records the guard acts on: the record's own hash, its link to the
    record before it (GENESIS for #1) and the link of the record after it. ``query(sql, params)``
    reads the same store (or transaction). A record at position 0 or below lies outside the chain.
    """
    pos, tag = rec["position"], rec["tag"]
    if not isinstance(pos, int) or pos < 1:
        return f"record {tag} lies outside the hash chain (position {pos}): it was inserted by hand"
    if _audit.record_hash(tag, rec["ts"], rec["subject"], rec["data"], rec["prev_hash"]) != rec["hash"]:
        return f"record #{pos} ({tag}) was modified: its content does not match its hash"
    if pos == 1:
        before = _audit.GENESIS
    else:
        rows = query("SELECT hash FROM locus_audit WHERE position = ?", (pos - 1,))
        before = rows[0][0] if rows else None
    if rec["prev_hash"] != before:
        return f"record #{pos} ({tag}) is not chained to record #{pos - 1}"
    rows = query("SELECT prev_hash FROM locus_audit WHERE position = ?", (pos + 1,))
    if rows and rows[0][0] != rec["hash"]:
        return f"record #{pos + 1} is not chained to record #{pos} ({tag}): one of them was rewritten"
    return None


# Each migration: (version, description, statements). Statements are written once, with
# {bigint} for a 64-bit integer (SQLite: INTEGER, PostgreSQL: BIGINT); where the engines need
# different SQL (triggers), statements is a dict per engine. Append only; never edit a
# released entry.
_BIGINT = {"sqlite": "INTEGER", "postgresql": "BIGINT"}

MIGRATIONS = [
    (
        1,
        "REF-tag sequences and the hash-chained audit trail",
        {
            "sqlite": [
                """CREATE TABLE locus_ref_sequence (
                       action TEXT NOT NULL, day TEXT NOT NULL, last_seq {bigint} NOT NULL,
                       PRIMARY KEY (action, day))""",
                """CREATE TABLE locus_audit (
                       position {bigint} PRIMARY KEY, tag TEXT NOT NULL UNIQUE,
                       ts TEXT NOT NULL, subject TEXT NOT NULL, data TEXT NOT NULL,
                       prev_hash TEXT NOT NULL, hash TEXT NOT NULL)""",
                # Append-only for anyone going through SQL; the hash chain catches the rest.
                """CREATE TRIGGER locus_audit_no_update BEFORE UPDATE ON locus_audit
                   BEGIN SELECT RAISE(ABORT, 'locus_audit is append-only'); END""",
                """CREATE TRIGGER locus_audit_no_delete BEFORE DELETE ON locus_audit
                   BEGIN SELECT RAISE(ABORT, 'locus_audit is append-only'); END""",
            ],
            "postgresql": [
                """CREATE TABLE locus_ref_sequence (
                       action TEXT NOT NULL, day TEXT NOT NULL, last_seq {bigint} NOT NULL,
                       PRIMARY KEY (action, day))""",
                """CREATE TABLE locus_audit (
                       position {bigint} PRIMARY KEY, tag TEXT NOT NULL UNIQUE,
                       ts TEXT NOT NULL, subject TEXT NOT NULL, data TEXT NOT NULL,
                       prev_hash TEXT NOT NULL, hash TEXT NOT NULL)""",
                """CREATE FUNCTION locus_audit_append_only() RETURNS trigger AS $$
                   BEGIN RAISE EXCEPTION 'locus_audit is append-only'; END $$ LANGUAGE plpgsql""",
                """CREATE TRIGGER locus_audit_no_change BEFORE UPDATE OR DELETE ON locus_audit
                   FOR EACH ROW EXECUTE FUNCTION locus_audit_append_only()""",
            ],
        },
    ),
    (
        2,
        "memo of values computed once per run (lookups re-run at every templating)",
        [
            """CREATE TABLE locus_memo (
                   scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, created TEXT NOT NULL,
                   PRIMARY KEY (scope, key))""",
        ],
    ),
    (
        3,
        "agents: response cache and budget ledger (see _agent.py, _budget.py)",
        [
            """CREATE TABLE locus_agent_cache (
                   key TEXT PRIMARY KEY, backend TEXT NOT NULL, model TEXT NOT NULL,
                   response TEXT NOT NULL, source_tag TEXT NOT NULL, created TEXT NOT NULL)""",
            # Amounts in integer micro-USD: no float drift when the ledger is added up.
            """CREATE TABLE locus_agent_ledger (
                   id TEXT PRIMARY KEY, day TEXT NOT NULL, ts TEXT NOT NULL, agent TEXT NOT NULL,
                   backend TEXT NOT NULL, model TEXT NOT NULL, lane TEXT NOT NULL, state TEXT NOT NULL,
                   estimate_micro_usd {bigint} NOT NULL, estimate_tokens {bigint} NOT NULL,
                   input_tokens {bigint} NOT NULL DEFAULT 0, output_tokens {bigint} NOT NULL DEFAULT 0,
                   cost_micro_usd {bigint} NOT NULL DEFAULT 0, tag TEXT)""",
            "CREATE INDEX locus_agent_ledger_day ON locus_agent_ledger (day, agent)",
        ],
    ),
    (
        4,
        "guard: emergency halt state and approvals already used (see _guard.py, _approval.py)",
        [
            # One row: the current halt (its HALT tag and reason) and the halt epoch, which
            # every halt increments so that approvals given before it are void.
            """CREATE TABLE locus_guard_halt (
                   id INTEGER PRIMARY KEY CHECK (id = 1), halted INTEGER NOT NULL,
                   tag TEXT, reason TEXT, since TEXT, by_user TEXT, epoch {bigint} NOT NULL)""",
            "INSERT INTO locus_guard_halt (id, halted, epoch) VALUES (1, 0, 0)",
            """CREATE TABLE locus_guard_approval_used (
                   ref TEXT PRIMARY KEY, used_at TEXT NOT NULL, approval_tag TEXT NOT NULL,
                   method TEXT NOT NULL)""",
        ],
    ),
    (
        5,
        "guard: find HALT and APPROVAL records fast (the halt and single use are derived from them)",
        [
            # Partial indexes: the guard's queries repeat these exact predicates.
            "CREATE INDEX locus_audit_halt ON locus_audit (position) WHERE tag LIKE 'LOCUS-HALT%'",
            "CREATE INDEX locus_audit_approval ON locus_audit (position) WHERE tag LIKE 'LOCUS-APPROVAL%'",
        ],
    ),
]


def migration_sql(statements, engine):
    """The SQL of one migration for ``engine``."""
    if isinstance(statements, dict):
        statements = statements[engine]
    return [sql.replace("{bigint}", _BIGINT[engine]) for sql in statements]


def redact_url(url):
    """``url`` with any password replaced, for messages (parsed, see :func:`_redact.redact_url`)."""
    return _redact.redact_url(url)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _ts(now):
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _checked(action, subject, data):
    """``data``, once subject and data are known to make a valid record (else :class:`RecordError`).

    The store never holds what is not valid UTF-8 JSON: every writer (CLI, modules, lookups,
    callback, agents) comes through here.
    """
    try:
        _audit.check_text(str(subject), "the subject")
        _audit.check_value(data, "data")
    except _audit.NotRecordable as exc:
        raise RecordError(f"cannot record a {action} record: {exc}") from None
    return data


def _find(query, action, subject, fields, since, until, limit):
    """:meth:`Store.find` through ``query`` (a store's or a write transaction's)."""

    def like(text):
        return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

    sql, params = "SELECT position, tag, ts, subject, data, prev_hash, hash FROM locus_audit WHERE 1 = 1", []
    if action:
        sql += " AND tag LIKE ?"
        params.append(f"LOCUS-{_refs.check_action(action)}2%")
    if subject:
        sql += " AND LOWER(subject) LIKE ? ESCAPE '\\'"
        params.append(like(subject.lower()))
    for key, value in sorted((fields or {}).items()):
        sql += " AND data LIKE ? ESCAPE '\\'"
        params.append(like(_audit.canonical_json({key: value})[1:-1]))
    for value, op in ((since, ">="), (until, "<=")):
        if value:
            sql += f" AND ts {op} ?"
            params.append(value)
    rows = query(sql + " ORDER BY position DESC LIMIT ?", (*params, int(limit)))
    return [_audit.row_dict(r) for r in rows]


class Transaction(_guard_state.GuardReads, _guard_state.GuardWrites):
    """SQL inside one write transaction, with ``?`` placeholders on both engines (and the guard's reads
    and writes, :mod:`_guard_state`, so that its checks and writes share the transaction)."""

    def __init__(self, store, cursor):
        self._store = store
        self._cur = cursor

    def execute(self, sql, params=()):
        self._cur.execute(self._store._sql(sql), params)
        return self._cur

    def query(self, sql, params=()):
        return self.execute(sql, params).fetchall()

    def record(self, action, subject, data=None):
        return self.record_many([(action, subject, data)])[0]

    def find(self, action=None, subject=None, fields=None, since=None, until=None, limit=100):
        """:meth:`Store.find` inside this transaction."""
        return _find(self.query, action, subject, fields, since, until, limit)

    # -- the agents' spending ledger (rows: reserved -> spent or released) ------------------------
    def ledger_used(self, day, agent=None):
        """``(micro-USD, tokens)`` on ``day``: what was spent, plus the estimate of what is still reserved."""
        sql = ("SELECT COALESCE(SUM(CASE WHEN state = 'reserved' THEN estimate_micro_usd ELSE cost_micro_usd END), 0), "
               "COALESCE(SUM(CASE WHEN state = 'reserved' THEN estimate_tokens ELSE input_tokens + output_tokens END), 0) "
               "FROM locus_agent_ledger WHERE day = ? AND state <> 'released'")
        row = self.query(sql + " AND agent = ?", (day, agent))[0] if agent else self.query(sql, (day,))[0]
        return int(row[0]), int(row[1])

    def ledger_reserve(self, reservation, day, ts, *, agent, backend, model, lane, estimate_micro, estimate_tokens):
        self.execute(
            "INSERT INTO locus_agent_ledger (id, day, ts, agent, backend, model, lane, state, "
            "estimate_micro_usd, estimate_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, 'reserved', ?, ?)",
            (reservation, day, ts, agent, backend, model, lane, estimate_micro, estimate_tokens),
        )

    def ledger_settle(self, reservation, *, input_tokens, output_tokens, cost_micro, tag):
        self.execute(
            "UPDATE locus_agent_ledger SET state = 'spent', input_tokens = ?, output_tokens = ?, "
            "cost_micro_usd = ?, tag = ? WHERE id = ?",
            (input_tokens, output_tokens, cost_micro, tag, reservation),
        )

    def ledger_release(self, reservation, tag=None):
        self.execute("UPDATE locus_agent_ledger SET state = 'released', tag = ? WHERE id = ?", (tag, reservation))

    def keep_agent_answer(self, key, backend, model, response, source_tag):
        """Cache an agent's answer (``response``: JSON text) under its request ``key``; the first one stays."""
        self.execute(
            "INSERT INTO locus_agent_cache (key, backend, model, response, source_tag, created) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (key, backend, model, response, source_tag, _ts(_now())),
        )

    def record_many(self, entries):
        """Allocate a tag and append a chained audit record for each ``(action, subject, data)``.

        Every record passes :func:`_redact.scrub` here, whoever writes it: values known to be
        secret in this process are masked; then what is not valid UTF-8 JSON is refused.
        """
        entries = [
            (a, _redact.scrub_literals(s, clean=False), _redact.scrub(d or {}, clean=False)) for a, s, d in entries
        ]
        entries = [(_refs.check_action(a), str(s), _audit.canonical_json(_checked(a, s, d))) for a, s, d in entries]
        if not entries:
            return []
        now = _now()
        day, ts = _refs.utc_day(now), _ts(now)
        last = self.query("SELECT position, hash FROM locus_audit ORDER BY position DESC LIMIT 1")
        position, prev = (last[0][0], last[0][1]) if last else (0, _audit.GENESIS)
        tags = []
        for action, subject, data in entries:
            row = self.query(
                "INSERT INTO locus_ref_sequence (action, day, last_seq) VALUES (?, ?, 1) "
                "ON CONFLICT (action, day) DO UPDATE SET last_seq = locus_ref_sequence.last_seq + 1 "
                "RETURNING last_seq",
                (action, day),
            )
            tag = _refs.format_tag(action, day, row[0][0])
            position += 1
            digest = _audit.record_hash(tag, ts, subject, data, prev)
            self.execute(
                "INSERT INTO locus_audit (position, tag, ts, subject, data, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (position, tag, ts, subject, data, prev, digest),
            )
            prev = digest
            tags.append(tag)
        return tags


class Store(_guard_state.GuardReads):
    """Base class: the engine-specific parts are connecting and locking."""

    engine = None
    location = None

    def __init__(self):
        self._conn = None

    # -- engine hooks -------------------------------------------------------------------------
    def _sql(self, sql):
        return sql

    def _begin_write(self, cur):
        """Take the engine's write lock for one transaction (SQLite: flock + BEGIN IMMEDIATE, PostgreSQL: an advisory lock)."""
        raise NotImplementedError

    def _end_write(self):
        """Release what :meth:`_begin_write` took beyond the transaction itself."""

    def _errors(self):
        """The engine driver's exception classes that mean the store is unreachable or broken."""
        raise NotImplementedError

    # -- transactions ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self):
        """A write transaction holding the store's writer lock; commits on success."""
        cur = self._conn.cursor()
        try:
            self._begin_write(cur)
            yield Transaction(self, cur)
            self._conn.commit()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self._conn.rollback()
            if isinstance(exc, self._errors()):
                raise StoreError(f"{self.engine} store {self.location}: {exc}") from exc
            raise
        finally:
            with contextlib.suppress(Exception):
                cur.close()
            self._end_write()

    def query(self, sql, params=()):
        """A read outside any write transaction."""
        try:
            cur = self._conn.cursor()
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
            cur.close()
            self._conn.commit()  # end the implicit read transaction (PostgreSQL)
            return rows
        except self._errors() as exc:
            raise StoreError(f"{self.engine} store {self.location}: {exc}") from exc

    # -- REF-tags and audit ---------------------------------------------------------------------
    def record(self, action, subject, data=None):
        """Allocate a REF-tag for ``action`` and append its audit record; return the tag."""
        return self.record_many([(action, subject, data)])[0]

    def record_many(self, entries):
        entries = list(entries)
        for action, _subject, _data in entries:
            _refs.check_action(action)  # fail before opening a transaction
        with self.transaction() as tx:
            return tx.record_many(entries)

    def ledger_spent(self, day, agent=None):
        """``(micro-USD, tokens, calls)`` on ``day``: spent and still reserved (tokens: spent only)."""
        sql = ("SELECT COALESCE(SUM(CASE WHEN state = 'reserved' THEN estimate_micro_usd ELSE cost_micro_usd END), 0), "
               "COALESCE(SUM(input_tokens + output_tokens), 0), COUNT(*) FROM locus_agent_ledger "
               "WHERE day = ? AND state <> 'released'")
        row = self.query(sql + " AND agent = ?", (day, agent))[0] if agent else self.query(sql, (day,))[0]
        return int(row[0]), int(row[1]), int(row[2])

    def agent_answer(self, key):
        """``(response JSON text, source tag)`` cached for an agent request ``key``, or None."""
        rows = self.query("SELECT response, source_tag FROM locus_agent_cache WHERE key = ?", (key,))
        return (rows[0][0], rows[0][1]) if rows else None

    def memo(self, scope, key):
        """The value kept for ``(scope, key)`` by :meth:`memoised`, or None (a read, no lock)."""
        rows = self.query("SELECT value FROM locus_memo WHERE scope = ? AND key = ?", (scope, key))
        return rows[0][0] if rows else None

    def memoised(self, scope, key, compute):
        """``(value, reused)``: the value kept for ``(scope, key)``, or ``compute(tx)`` kept now.

        Check and computation share one write transaction, so concurrent callers agree on
        one value (e.g. one REF-tag per task and term however often a lookup is templated).
        """
        with self.transaction() as tx:
            rows = tx.query("SELECT value FROM locus_memo WHERE scope = ? AND key = ?", (scope, key))
            if rows:
                return rows[0][0], True
            value = compute(tx)
            tx.execute(
                "INSERT INTO locus_memo (scope, key, value, created) VALUES (?, ?, ?, ?)",
                (scope, key, value, _ts(_now())),
            )
            return value, False

    def records(self, after=None, limit=None):
        """Audit rows as dicts in position order, from position ``after + 1`` (``None``: every row,
        also rows at position 0 or below, which lie outside the chain and fail verification)."""
        sql = "SELECT position, tag, ts, subject, data, prev_hash, hash FROM locus_audit"
        params = []
        if after is not None:
            sql += " WHERE position > ?"
            params.append(after)
        sql += " ORDER BY position"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return [_audit.row_dict(r) for r in self.query(sql, params)]

    def iter_records(self, batch=5000):
        after = None
        while True:
            rows = self.records(after=after, limit=batch)
            if not rows:
                return
            yield from rows
            after = rows[-1]["position"]

    def get(self, tag):
        """The record of ``tag`` or None; :class:`Tampered` when it is not a sound link of the chain."""
        rec = self.audit_record(tag)
        if rec is None:
            return None
        problem = chain_problem(self.query, rec)
        if problem:
            raise Tampered(f"{self.engine} store {self.location}: {problem}; run `locus audit verify`")
        return rec

    def job_records(self, job):
        """The records of one playbook run: its JOB records and every record naming it as ``job``."""
        rows = self.query(
            "SELECT position, tag, ts, subject, data, prev_hash, hash FROM locus_audit "
            "WHERE tag = ? OR data LIKE ? ORDER BY position",
            (job, f'%"job":{_audit.canonical_json(job)}%'),
        )
        return [_audit.row_dict(r) for r in rows]

    def last(self, n):
        rows = self.query(
            "SELECT position, tag, ts, subject, data, prev_hash, hash FROM locus_audit ORDER BY position DESC LIMIT ?",
            (n,),
        )
        return [_audit.row_dict(r) for r in reversed(rows)]

    def find(self, action=None, subject=None, fields=None, since=None, until=None, limit=100):
        """Audit rows as dicts, newest first, at most ``limit``: of one REF-tag ``action``, whose subject
        contains ``subject`` (case-insensitive), whose data holds ``"key":value`` for each of ``fields``
        (a prefilter: nested keys match too, callers check the record's own), within ``since``/``until``
        (timestamps as the store writes them). Every value is a literal, never a pattern."""
        return _find(self.query, action, subject, fields, since, until, limit)

    def audit_since(self, since):
        """``(tag, ts, data)`` of every audit record stamped ``since`` or later, in position order."""
        return self.query("SELECT tag, ts, data FROM locus_audit WHERE ts >= ? ORDER BY position", (since,))

    def ledger_per_day(self, since_day):
        """``(day, agent, micro-USD, tokens, calls)`` per day and agent from ``since_day`` (YYYYMMDD) on:
        spent plus the estimate of what is still reserved, as :meth:`ledger_spent` counts a day."""
        return self.query(
            "SELECT day, agent, COALESCE(SUM(CASE WHEN state = 'reserved' THEN estimate_micro_usd ELSE cost_micro_usd END), 0), "
            "COALESCE(SUM(input_tokens + output_tokens), 0), COUNT(*) FROM locus_agent_ledger "
            "WHERE day >= ? AND state <> 'released' GROUP BY day, agent ORDER BY day, agent",
            (since_day,),
        )

    def sequences(self):
        """``{(action, day): last_seq}`` as allocated."""
        return {(a, d): s for a, d, s in self.query("SELECT action, day, last_seq FROM locus_ref_sequence")}

    def head(self):
        """The chain head: what to keep elsewhere to detect truncation or rewriting."""
        rows = self.query("SELECT position, tag, hash FROM locus_audit ORDER BY position DESC LIMIT 1")
        if not rows:
            return {"count": 0, "last_tag": None, "head_hash": _audit.GENESIS}
        return {"count": rows[0][0], "last_tag": rows[0][1], "head_hash": rows[0][2]}

    def verify(self, head=None):
        """Verify the whole chain (and against an exported ``head``); see :func:`_audit.verify`.

        A sound chain is then compared with the guard's tables (halt state, used approvals),
        which must agree with the HALT and APPROVAL records (kind ``tables``).
        """
        result = _audit.verify(self.iter_records(), self.sequences(), head=head, find_hash=self._position_of_hash)
        if result["ok"]:
            from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard  # the guard builds on the store

            problem = _guard.tables_problem(self)
            if problem:
                result = dict(result, ok=False, problem=_audit.Problem("tables", None, None, problem))
        return result

    def _position_of_hash(self, digest):
        rows = self.query("SELECT position FROM locus_audit WHERE hash = ?", (digest,))
        return rows[0][0] if rows else None

    # -- schema -------------------------------------------------------------------------------------
    def schema_version(self):
        return self.query("SELECT COALESCE(MAX(version), 0) FROM locus_schema")[0][0]

    def _migrate(self):
        known = MIGRATIONS[-1][0]
        with self.transaction() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS locus_schema (version INTEGER PRIMARY KEY, "
                "description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            current = tx.query("SELECT COALESCE(MAX(version), 0) FROM locus_schema")[0][0]
            if current > known:
                raise StoreError(
                    f"{self.engine} store {self.location} has schema version {current}, newer than this "
                    f"collection knows ({known}); upgrade locus.infra"
                )
            for version, description, statements in MIGRATIONS:
                if version <= current:
                    continue
                for sql in migration_sql(statements, self.engine):
                    tx.execute(sql)
                tx.execute(
                    "INSERT INTO locus_schema (version, description, applied_at) VALUES (?, ?, ?)",
                    (version, description, _ts(_now())),
                )

    def close(self):
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SQLiteStore(Store):
    engine = "sqlite"

    def __init__(self, state_dir):
        super().__init__()
        try:
            _audit.check_text(state_dir, "the state directory")
        except _audit.NotRecordable as exc:  # NUL, or an unencodable surrogate: no file has that name
            raise StoreError(f"{exc}; set LOCUS_STATE_DIR to a valid path") from None
        state_dir = os.path.abspath(os.path.expanduser(state_dir))
        self.state_dir = state_dir
        self.path = self.location = os.path.join(state_dir, DB_NAME)
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the state directory {state_dir} ({exc.strerror}); "
                "set LOCUS_STATE_DIR to a writable directory"
            ) from exc
        if not os.access(state_dir, os.W_OK | os.X_OK):
            raise StoreError(
                f"the state directory {state_dir} is not writable; set LOCUS_STATE_DIR to a writable directory"
            )
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            self._conn = sqlite3.connect(self.path, timeout=120, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise StoreError(f"cannot open the SQLite store {self.path}: {exc}") from exc
        self._migrate()

    def _begin_write(self, cur):
        # Writers queue on a file lock first and poll it in sub-millisecond steps: SQLite's own
        # busy handler sleeps up to 100 ms between tries, which wastes most of the throughput
        # when many processes write at once. Bounded, so a stuck writer gives an error.
        try:
            poll(self._try_write_lock, timeout=WRITE_LOCK_TIMEOUT, interval=0.0002, factor=1.5, cap=0.005)
        except WaitTimeout:
            raise StoreError(
                f"sqlite store {self.path}: another writer has held it for over {WRITE_LOCK_TIMEOUT} s"
            ) from None
        cur.execute("BEGIN IMMEDIATE")

    def _try_write_lock(self):
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        return True

    def _end_write(self):
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _errors(self):
        return (sqlite3.Error,)

    def close(self):
        super().close()
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def query(self, sql, params=()):
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self.location}: {exc}") from exc


class PostgresStore(Store):
    engine = "postgresql"

    def __init__(self, url, connect_timeout=10):
        super().__init__()
        self.location = redact_url(url)
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError("LOCUS_STATE_URL names PostgreSQL but the Python package psycopg (3) is missing") from exc
        self._psycopg = psycopg
        try:
            self._conn = psycopg.connect(url, connect_timeout=connect_timeout, autocommit=False)
        except psycopg.Error as exc:
            # libpq echoes pieces of a URL it cannot parse: mask every piece of the password.
            reason = _redact.scrub_fragments(" ".join(str(exc).split()), _redact.url_secrets(url))
            raise StoreError(f"cannot connect to the PostgreSQL store {self.location}: {reason}") from exc
        self._migrate()

    def _sql(self, sql):
        return sql.replace("%", "%%").replace("?", "%s")

    def _begin_write(self, cur):
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))

    def _errors(self):
        return (self._psycopg.Error,)


def check_url(url):
    """Validate ``LOCUS_STATE_URL``; return it, or raise a :class:`StoreError` saying what is wrong.

    Parsed with :func:`_redact.split_url` (a password may hold '@', '/' or spaces), and no
    part of the URL but its redacted form is ever put in a message.
    """
    try:
        _audit.check_text(url, "LOCUS_STATE_URL")
    except _audit.NotRecordable as exc:
        raise StoreError(str(exc)) from None
    shown = redact_url(url)
    try:
        urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed [IPv6 address (the message holds no part of the URL)
        raise StoreError(f"LOCUS_STATE_URL {shown!r}: {exc}") from None
    try:
        scheme, _user, _password, rest, pairs = _redact.split_url(url)
    except ValueError:
        scheme, rest, pairs = "", "", []
    if scheme not in ("postgresql", "postgres"):
        raise StoreError(
            f"LOCUS_STATE_URL {shown!r} is not a PostgreSQL URL: expected postgresql://user:password@host:port/database"
        )
    hostport, _slash, database = rest.partition("/")
    host, port = hostport, ""
    if not hostport.endswith("]") and ":" in hostport:
        host, port = hostport.rsplit(":", 1)
    if port and not port.isdigit():
        raise StoreError(f"LOCUS_STATE_URL {shown!r}: the port is not a number")
    if port and int(port) > 65535:
        raise StoreError(f"LOCUS_STATE_URL {shown!r}: Port out of range 0-65535")
    if not host and not any(k == "host" for k, _v in pairs):
        raise StoreError(f"LOCUS_STATE_URL {shown!r} names no host")
    if not database.strip("/") and not any(k == "dbname" for k, _v in pairs):
        raise StoreError(f"LOCUS_STATE_URL {shown!r} names no database")
    return url


def open_store(url=None, state_dir=None):
    """Open the store named by ``url``/``state_dir`` or, failing those, by the environment.

    ``url`` (or ``LOCUS_STATE_URL``) selects PostgreSQL; otherwise SQLite under ``state_dir``
    (or ``LOCUS_STATE_DIR``, default ``~/.local/state/locus``).
    """
    url = _setting(url, "the state URL", "LOCUS_STATE_URL")
    if url:
        return PostgresStore(check_url(url))
    return SQLiteStore(_setting(state_dir, "the state directory", "LOCUS_STATE_DIR") or DEFAULT_STATE_DIR)


def _setting(value, what, variable):
    """``value``, else the environment's ``variable``, else None. An empty one is refused:
    falling back to the default store would put records where nobody looks for them."""
    if value is not None:
        if not value.strip():
            raise StoreError(f"{what} is empty: name one (an empty value must not fall back to {variable} or the default store)")
        return value
    value = os.environ.get(variable)
    if value is not None and not value.strip():
        raise StoreError(f"{variable} is set but empty: name one, or unset it to use the default store")
    return value


def ephemeral_warning(store, variables):
    """The loud warning for an AWX job writing its audit trail into its throw-away container."""
    if store.engine == "sqlite" and variables and (variables.get("awx_job_id") or variables.get("tower_job_id")):
        return (
            "locus.infra: this AWX job writes its audit trail to SQLite at "
            f"{store.location} INSIDE THE JOB CONTAINER; the records die with the container when "
            "the job ends. Set LOCUS_STATE_URL=postgresql://… (the shared store) through a credential."
        )
    return None


def dumps(data):
    """JSON for humans (CLI output): stable key order."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)
