# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several agents on one question: consensus votes and cross-verification.

Private API of the collection (may change without notice). Each member's call is an
ordinary :func:`_agent.run_agent` call (lanes, budget, cache and audit all apply).

Consensus passes iff ``yes * D >= len(roster) * N`` for the threshold ``N/D`` (default 2/3):
integer arithmetic over the *full* roster, so abstentions and failed members count against.
"""

from __future__ import annotations

import re

from ansible_collections.locus.infra.plugins.plugin_utils.agents import _agent

VOTES = ("yes", "no", "abstain")
VOTE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["vote", "reasons"],
    "properties": {
        "vote": {"enum": list(VOTES)},
        "reasons": {"type": "array", "items": {"type": "string", "maxLength": 160}, "minItems": 1, "maxItems": 3},
    },
}
VERDICT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["verdict", "issues"],
    "properties": {
        "verdict": {"enum": ["agree", "disagree"]},
        "issues": {"type": "array", "items": {"type": "string", "maxLength": 160}, "maxItems": 5},
    },
}
MEMBER_OPTIONS = ("role", "backend", "model", "lane", "host", "base_url", "max_tokens", "temperature", "top_k", "name")


def parse_threshold(value):
    """``(numerator, denominator)`` from ``"2/3"`` (or a pair); 0 < N/D <= 1."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        num, den = value
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(value))
        if not m:
            raise _agent.AgentError("input", f"option threshold: {value!r} is not a fraction like 2/3")
        num, den = m.groups()
    try:
        num, den = int(num), int(den)
    except (TypeError, ValueError):
        raise _agent.AgentError("input", f"option threshold: {value!r} is not a fraction of integers") from None
    if den <= 0 or num <= 0 or num > den:
        raise _agent.AgentError("input", f"option threshold: {num}/{den} must be in (0, 1]")
    return num, den


def tally(votes, roster_size, threshold=(2, 3)):
    """The decision for ``votes`` (each ``yes``/``no``/``abstain``/``failed``/``pending``).

    Members missing from ``votes`` count as failed. ``passed`` is None while any vote is
    pending (check mode without a cached answer) and the outcome could still go either way.
    """
    num, den = threshold
    if roster_size < 1:
        raise _agent.AgentError("input", "option roster: at least one agent is required")
    counts = {k: 0 for k in ("yes", "no", "abstain", "failed", "pending")}
    for vote in votes:
        counts[vote if vote in counts else "failed"] += 1
    counts["failed"] += max(0, roster_size - len(votes))
    needed = -(-roster_size * num // den)  # ceil(roster * N / D) in integers
    passed = counts["yes"] * den >= roster_size * num
    if not passed and counts["pending"] and (counts["yes"] + counts["pending"]) * den >= roster_size * num:
        passed = None
    return {**counts, "roster": roster_size, "needed": needed, "threshold": f"{num}/{den}", "passed": passed}


def _member(entry, common, index):
    if isinstance(entry, str):
        entry = {"role": entry}
    if not isinstance(entry, dict) or "role" not in entry:
        raise _agent.AgentError("input", f"option roster[{index}]: expected a role name or a mapping with 'role'")
    unknown = set(entry) - set(MEMBER_OPTIONS)
    if unknown:
        raise _agent.AgentError(
            "input", f"option roster[{index}]: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(MEMBER_OPTIONS)}"
        )
    name = entry.get("name") or f"{entry['role']}#{index + 1}"
    options = {**common, **{k: v for k, v in entry.items() if k != "name"}}
    return name, options


def run_consensus(question, roster, store, *, context=None, common=None, threshold="2/3", check_mode=False, job=None,
                  env=None, backend_factory=None):
    """Ask every roster member to vote on ``question``; return the decision with votes and dissent."""
    if not isinstance(question, str) or not question.strip():
        raise _agent.AgentError("input", "option question: a non-empty string is required")
    if not isinstance(roster, list) or not roster:
        raise _agent.AgentError("input", "option roster: a non-empty list of agents is required")
    num, den = parse_threshold(threshold)
    members = [_member(entry, dict(common or {}), i) for i, entry in enumerate(roster)]
    names = [member[0] for member in members]
    if len(set(names)) != len(names):
        raise _agent.AgentError("input", "option roster: member names must be unique (set 'name')")
    task = (
        f"Vote on this question: {question.strip()}\n"
        "Vote yes only if the context supports it; vote no if it does not; abstain if the facts are not enough. "
        "Give one to three short reasons."
    )
    votes = []
    for name, options in members:
        vote = {"agent": name, "role": options["role"]}
        try:
            result = _agent.run_agent(
                {**options, "task": task, "context": context, "schema": VOTE_SCHEMA},
                store,
                check_mode=check_mode,
                job=job,
                env=env,
                backend_factory=backend_factory,
            )
        except _agent.AgentError as exc:
            vote.update(vote="failed", reasons=[str(exc)], ref_tag=exc.result.get("ref_tag"), error_kind=exc.kind)
        else:
            if result["would_call"]:
                vote.update(vote="pending", reasons=["check mode: no cached vote"], ref_tag=result["ref_tag"])
            else:
                vote.update(
                    vote=result["output"]["vote"],
                    reasons=result["output"]["reasons"],
                    ref_tag=result["ref_tag"],
                    cached=result["cached"],
                    cost_usd=result["cost_usd"],
                )
        votes.append(vote)
    decision = tally([v["vote"] for v in votes], len(members), (num, den))
    if decision["passed"] is True:
        dissent = [v for v in votes if v["vote"] != "yes"]
    elif decision["passed"] is False:
        dissent = [v for v in votes if v["vote"] == "yes"]
    else:
        dissent = []
    data = {
        "kind": "consensus",
        "question": question[:500],
        "votes": [{k: v.get(k) for k in ("agent", "role", "vote", "ref_tag")} for v in votes],
        **{k: decision[k] for k in ("yes", "no", "abstain", "failed", "pending", "roster", "needed", "threshold", "passed")},
        "check_mode": bool(check_mode),
    }
    if job:
        data["job"] = job
    verdict = {True: "passed", False: "rejected", None: "undecided"}[decision["passed"]]
    tag = store.record("AGENT", f"consensus {verdict} ({decision['yes']}/{len(members)} yes): {question[:100]}", data)
    return {
        "changed": False,
        "ref_tag": tag,
        "decision": verdict,
        "passed": decision["passed"],
        "tally": {k: decision[k] for k in ("yes", "no", "abstain", "failed", "pending", "roster", "needed", "threshold")},
        "votes": votes,
        "dissent": dissent,
    }


def run_verify(question, answer, store, *, context=None, options=None, answer_ref_tag=None, check_mode=False, job=None,
               env=None, backend_factory=None):
    """A second agent checks ``answer`` to ``question`` against ``context``; agree/disagree with issues."""
    if not isinstance(question, str) or not question.strip():
        raise _agent.AgentError("input", "option question: a non-empty string is required")
    if answer in (None, "", {}, []):
        raise _agent.AgentError("input", "option answer: the answer to check is required")
    options = dict(options or {})
    options.setdefault("role", "orchestrator")
    task = (
        f"Another agent was asked: {question.strip()}\n"
        "Check its answer (in the context under 'answer_to_check') independently against the facts (under "
        "'facts'). Do not trust the answer: verify each claim. Reply agree only if the answer is correct and "
        "complete; otherwise disagree and list each issue."
    )
    result = _agent.run_agent(
        {**options, "task": task, "context": {"facts": context, "answer_to_check": answer}, "schema": VERDICT_SCHEMA},
        store,
        check_mode=check_mode,
        job=job,
        env=env,
        backend_factory=backend_factory,
    )
    out = {
        "changed": False,
        "ref_tag": result["ref_tag"],
        "verifier": options["role"],
        "cached": result["cached"],
        "would_call": result["would_call"],
        "cost_usd": result["cost_usd"],
        "answer_ref_tag": answer_ref_tag,
    }
    if result["would_call"]:
        out.update(agree=None, verdict=None, issues=[], msg=result.get("msg"))
    else:
        out.update(
            agree=result["output"]["verdict"] == "agree",
            verdict=result["output"]["verdict"],
            issues=result["output"]["issues"],
        )
    return out
