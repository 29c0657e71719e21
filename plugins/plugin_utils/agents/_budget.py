# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Agent budgets: a dated price table, spend limits and a ledger in the state store.

Private API of the collection (may change without notice).

Money is counted in integer micro-USD (1e-6 USD) from :class:`decimal.Decimal` prices, and
rounded up: adding up the ledger never drifts, and a limit compares whole numbers.

A call first *reserves* its worst-case estimate (prompt tokens estimated from its size, all of
``max_tokens`` as output) in the ledger - checked against the limits and inserted in one write
transaction, so concurrent forks cannot together pass a limit that each one alone respects.
After the call the reservation is *settled* with the real usage (or *released* when nothing
was spent). A reservation whose process died keeps counting until the day ends: the ledger
errs on the side of spending less.
"""

from __future__ import annotations

import datetime
import math
import os
import uuid
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from ansible_collections.locus.infra.plugins.plugin_utils import _datafile

DATA_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "..", "data", "agents"))
DEFAULT_PRICES = os.path.join(DATA_DIR, "prices.yml")
MICRO = Decimal(1_000_000)

# Defaults of the spend limits (USD per UTC day unless named otherwise); None = no limit.
DEFAULT_LIMITS = {
    "daily_usd": "5.00",
    "agent_daily_usd": "1.00",
    "call_usd": "0.50",
    "daily_tokens": None,
    "agent_daily_tokens": None,
}
LIMIT_ENV = {name: f"LOCUS_BUDGET_{name.upper()}" for name in DEFAULT_LIMITS}
_PRICE_FIELDS = ("input", "output", "cache_write", "cache_read")


class BudgetError(Exception):
    """A price or limit problem; ``details`` says which limit, how much was spent and asked."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.details = details


def utc_day(now=None):
    return (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%d")


def _decimal(value, where):
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise BudgetError(f"{where}: {value!r} is not a number") from exc
    if not result.is_finite() or result < 0:
        raise BudgetError(f"{where}: {value!r} must be a number >= 0")
    return result


def usd_to_micro(value, where="amount"):
    return int((_decimal(value, where) * MICRO).to_integral_value(rounding=ROUND_CEILING))


def micro_to_usd(micro):
    """Micro-USD as a float rounded to 6 places, for results and messages."""
    return float(Decimal(micro) / MICRO)


class Price:
    """USD per MTok for one model."""

    def __init__(self, spec, where):
        if not isinstance(spec, dict):
            raise BudgetError(f"{where}: expected a mapping of prices, got {type(spec).__name__}")
        unknown = set(spec) - set(_PRICE_FIELDS) - {"long_prompt"}
        if unknown:
            raise BudgetError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for name in ("input", "output"):
            if name not in spec:
                raise BudgetError(f"{where}: missing {name!r}")
        self.rates = {
            name: _decimal(spec.get(name, spec["input"]), f"{where}.{name}") for name in _PRICE_FIELDS
        }
        self.long_prompt = None
        if spec.get("long_prompt") is not None:
            lp = spec["long_prompt"]
            if not isinstance(lp, dict) or "threshold_tokens" not in lp:
                raise BudgetError(f"{where}.long_prompt: needs threshold_tokens and prices")
            self.long_threshold = int(lp["threshold_tokens"])
            self.long_prompt = Price({k: v for k, v in lp.items() if k != "threshold_tokens"}, f"{where}.long_prompt")

    def cost_micro(self, input_tokens, output_tokens, cache_write=0, cache_read=0):
        """Cost in micro-USD, rounded up. USD/MTok x tokens = micro-USD."""
        prompt = input_tokens + cache_write + cache_read
        if self.long_prompt is not None and prompt > self.long_threshold:
            return self.long_prompt.cost_micro(input_tokens, output_tokens, cache_write, cache_read)
        r = self.rates
        total = (
            r["input"] * input_tokens
            + r["output"] * output_tokens
            + r["cache_write"] * cache_write
            + r["cache_read"] * cache_read
        )
        return int(total.to_integral_value(rounding=ROUND_CEILING))


class PriceTable:
    def __init__(self, data, path):
        self.path = path
        if not isinstance(data, dict) or not isinstance(data.get("backends"), dict):
            raise BudgetError(f"price table {path}: expected a mapping with 'as_of', 'currency' and 'backends'")
        self.as_of = str(data.get("as_of") or "")
        if not self.as_of:
            raise BudgetError(f"price table {path}: 'as_of' (the date the prices were checked) is missing")
        self.currency = data.get("currency", "USD")
        if self.currency != "USD":
            raise BudgetError(f"price table {path}: currency {self.currency!r} is not supported, use USD")
        self.models = {}
        for backend, models in data["backends"].items():
            if not isinstance(models, dict):
                raise BudgetError(f"price table {path}: backends.{backend} must map model names to prices")
            self.models[backend] = {
                str(name): Price(spec, f"price table {path}: backends.{backend}.{name}") for name, spec in models.items()
            }

    def lookup(self, backend, model):
        models = self.models.get(backend, {})
        if model in models:
            return models[model]
        prefixes = [name for name in models if name != "*" and model.startswith(name + "-")]
        if prefixes:
            return models[max(prefixes, key=len)]
        if "*" in models:
            return models["*"]
        raise BudgetError(
            f"no price for {backend} model {model!r} in the price table {self.path} (as of {self.as_of}); "
            "add it there or point the 'prices' option at a table that has it",
            limit="price",
        )


_TABLES = {}


def load_prices(path=None):
    """The price table at ``path`` (or ``LOCUS_AGENT_PRICES``, or the one shipped), validated."""
    path = os.path.abspath(os.path.expanduser(path or os.environ.get("LOCUS_AGENT_PRICES") or DEFAULT_PRICES))
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError as exc:
        raise BudgetError(f"price table {path}: {exc.strerror}") from exc
    cached = _TABLES.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    try:
        data, _digest = _datafile.load(path, "price table")
    except _datafile.DataFileError as exc:
        raise BudgetError(str(exc)) from None
    table = PriceTable(data, path)
    _TABLES[path] = (stamp, table)
    return table


def estimate_tokens(*texts):
    """A deliberately high token estimate: one token per 3 bytes, plus framing per text."""
    return sum(math.ceil(len(t.encode()) / 3) + 8 for t in texts if t)


def limits_from(options=None, env=None):
    """Spend limits from ``options`` (a dict), then ``LOCUS_BUDGET_*``, then the defaults.

    Returns ``{name: int or None}``: USD limits in micro-USD, token limits in tokens.
    """
    env = os.environ if env is None else env
    options = options or {}
    unknown = set(options) - set(DEFAULT_LIMITS)
    if unknown:
        raise BudgetError(
            f"budget: unknown limit(s) {', '.join(sorted(unknown))}; known: {', '.join(DEFAULT_LIMITS)}"
        )
    limits = {}
    for name, default in DEFAULT_LIMITS.items():
        value = options.get(name)
        where = f"budget.{name}"
        if value is None and env.get(LIMIT_ENV[name]) not in (None, ""):
            value, where = env[LIMIT_ENV[name]], LIMIT_ENV[name]
        if value is None:
            value = default
        if value is None:
            limits[name] = None
        elif name.endswith("_usd"):
            limits[name] = usd_to_micro(value, where)
        else:
            limits[name] = int(_decimal(value, where))
    return limits


def reserve(store, *, agent, backend, model, lane, estimate_micro, estimate_tokens, limits, now=None):
    """Check the limits and reserve the estimate; return the reservation id or raise BudgetError."""
    day = utc_day(now)
    ts = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with store.transaction() as tx:
        day_micro, day_tokens = tx.ledger_used(day)
        agent_micro, agent_tokens = tx.ledger_used(day, agent)
        checks = (
            ("call_usd", 0, estimate_micro, "this call"),
            ("agent_daily_usd", int(agent_micro), estimate_micro, f"agent {agent!r} today (UTC {day})"),
            ("daily_usd", int(day_micro), estimate_micro, f"all agents today (UTC {day})"),
            ("agent_daily_tokens", int(agent_tokens), estimate_tokens, f"agent {agent!r} today (UTC {day})"),
            ("daily_tokens", int(day_tokens), estimate_tokens, f"all agents today (UTC {day})"),
        )
        for name, used, asked, scope in checks:
            limit = limits.get(name)
            if limit is None or used + asked <= limit:
                continue
            if name.endswith("_usd"):
                msg = (
                    f"budget stop: {name} limit {micro_to_usd(limit):.6f} USD for {scope}; already "
                    f"{micro_to_usd(used):.6f} USD, this call is estimated at up to {micro_to_usd(asked):.6f} USD"
                )
            else:
                msg = (
                    f"budget stop: {name} limit {limit} tokens for {scope}; already {used}, "
                    f"this call is estimated at up to {asked} tokens"
                )
            raise BudgetError(msg, limit=name, used=used, estimate=asked, maximum=limit)
        reservation = uuid.uuid4().hex
        tx.ledger_reserve(reservation, day, ts, agent=agent, backend=backend, model=model, lane=lane,
                          estimate_micro=estimate_micro, estimate_tokens=estimate_tokens)
    return reservation


def settle(tx, reservation, *, input_tokens, output_tokens, cost_micro, tag):
    """Replace the reservation by the real spend (inside the caller's transaction)."""
    tx.ledger_settle(reservation, input_tokens=input_tokens, output_tokens=output_tokens, cost_micro=cost_micro, tag=tag)


def release(tx, reservation, tag=None):
    """Drop a reservation for a call that spent nothing."""
    tx.ledger_release(reservation, tag)


def spent(store, day=None, agent=None):
    """``{"usd", "micro_usd", "tokens", "calls"}`` spent (and still reserved) on ``day`` (UTC)."""
    micro, tokens, calls = store.ledger_spent(day or utc_day(), agent)
    return {"usd": micro_to_usd(int(micro)), "micro_usd": int(micro), "tokens": int(tokens), "calls": int(calls)}
