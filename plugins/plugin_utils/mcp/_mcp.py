# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``locus mcp``: a Model Context Protocol server over the audit trail, the inventory, the guard
and the reports, on the official ``mcp`` SDK (the ``mcp`` extra; requirements-mcp.txt).

Private API of the collection (may change without notice). Controller-only. The tools and their
controls are in :mod:`_mcp_tools`; this module carries them over stdio (default) or streamable
HTTP. HTTP always needs a bearer token (compared in constant time); the ``private`` lane serves
only stdio or a loopback address. Tool calls run one at a time on the one store connection.
"""

from __future__ import annotations

import hmac
import json
import os
import sys

from ansible_collections.locus.infra.plugins.plugin_utils.guard import _policy

# _mcp_tools (and through it Ansible's vault code, which creates ~/.ansible) is imported only when
# the server runs: every other `locus` command imports this module to register `locus mcp`.

EXIT_OK, EXIT_USAGE = 0, 2
TOKEN_ENV = "LOCUS_MCP_TOKEN"  # noqa: S105 - the name of the variable, not a token
MIN_TOKEN = 32
MAX_BODY = 1024 * 1024
LANES = ("private", "enterprise", "personal")
SERVER_NAME = "locus.infra"
INSTRUCTIONS = (
    "locus.infra: read the tamper-evident audit trail, the inventory, the guard's state and the reports of this "
    "infrastructure. Every call is recorded with its own REF-tag. request_halt is the only tool that changes anything; "
    "approvals and resumes stay with a human at the `locus` CLI or in AWX."
)


class ConfigError(Exception):
    """The server cannot start as asked: one line, exit 2."""


def _sdk():
    try:
        import mcp_types
        from mcp.server.lowlevel import Server
    except ImportError as exc:
        raise ConfigError(f"`locus mcp` needs the Python package mcp (the official MCP SDK), which {sys.executable} cannot "
                          f"import ({exc}): python3 -m pip install -r requirements-mcp.txt (in the collection), or "
                          "pip install 'locus-infra[mcp]' in a checkout") from None
    return Server, mcp_types


def build_server(tools, version=""):
    """The SDK's low-level server with our tools: JSON schemas in, structured content out."""
    Server, types = _sdk()
    from ansible_collections.locus.infra.plugins.plugin_utils.mcp import _mcp_tools

    listed = [
        types.Tool(name=name, description=desc, input_schema=schema_in, output_schema=schema_out,
                   annotations=types.ToolAnnotations(
                       read_only_hint=ann.get("readOnlyHint"), destructive_hint=ann.get("destructiveHint"),
                       idempotent_hint=ann.get("idempotentHint"), open_world_hint=False))
        for name, (desc, schema_in, schema_out, ann) in _mcp_tools.TOOLS.items()
    ]

    async def on_list_tools(ctx, params):
        return types.ListToolsResult(tools=listed)

    async def on_call_tool(ctx, params):
        info = None
        client_params = getattr(ctx.session, "client_params", None)
        if client_params is not None and client_params.client_info is not None:
            info = {"name": client_params.client_info.name, "version": client_params.client_info.version}
        peer = getattr(getattr(ctx, "request", None), "client", None)  # HTTP: starlette's (host, port)
        result, is_error = tools.call(params.name, params.arguments, info, f"{peer[0]}:{peer[1]}" if peer else None)
        text = result["error"] if is_error else json.dumps(result, ensure_ascii=False, sort_keys=True)
        return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=result, is_error=is_error)

    return Server(SERVER_NAME, version=version, title="locus.infra audit trail, inventory and guard (read-only)",
                  instructions=INSTRUCTIONS, on_list_tools=on_list_tools, on_call_tool=on_call_tool)


async def serve_stdio(tools):
    from mcp.server.stdio import stdio_server

    server = build_server(tools, _version())
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


class BearerGuard:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>`` (constant-time
    compare), else 401 before the MCP app sees it. Failed attempts are counted, never recorded
    with what was sent."""

    def __init__(self, app, token):
        self.app = app
        self._token = token.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = b""
        for key, value in scope.get("headers") or ():
            if key.lower() == b"authorization":
                given = value
                break
        scheme, _sep, credential = given.partition(b" ")
        ok = scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self._token)
        if not ok:
            body = b'{"error": "unauthorized: this locus mcp server needs Authorization: Bearer <token>"}'
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="locus mcp"'),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return None
        return await self.app(scope, receive, send)


def serve_http(tools, host, port, token):
    import uvicorn

    server = build_server(tools, _version())
    # bodies beyond 1 MiB are refused unread (413): the tools read at most 256 KiB of arguments
    app = BearerGuard(server.streamable_http_app(host=host, json_response=True, max_request_body_size=MAX_BODY), token)
    print(f"locus mcp: serving streamable HTTP on http://{_hostport(host, port)}/mcp (bearer token required)", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")).run()


def _hostport(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _version():
    try:
        from importlib.metadata import version

        return version("locus-infra")
    except Exception:  # noqa: BLE001 - installed as a collection, not as a Python package
        return ""


def _read_token(path):
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--token-file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
        where = f"--token-file {path}"
    else:
        token = (os.environ.get(TOKEN_ENV) or "").strip()
        where = f"${TOKEN_ENV}"
    if not token:
        raise ConfigError(f"--http needs a bearer token: give it with --token-file FILE or ${TOKEN_ENV} "
                          "(e.g. `openssl rand -hex 32`); this server never serves HTTP without one")
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token) or not token.isprintable():
        raise ConfigError(f"{where}: the bearer token must be at least {MIN_TOKEN} printable characters without spaces")
    return token


def _parse_http(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--http {text!r}: give HOST:PORT, e.g. 127.0.0.1:8765")
    return host.strip("[]") or "127.0.0.1", int(port)


def cmd_mcp(args, store):
    """Run the server until its client goes away (stdio) or it is interrupted (HTTP)."""
    try:
        _sdk()
        from ansible_collections.locus.infra.plugins.plugin_utils.mcp import _mcp_tools

        policy = _policy.load_policy(args.policy)  # fail at start on a bad policy, not at the first call
        lane = args.lane or policy.data["lanes"]["default"]
        if lane not in policy.data["lanes"]["allowed"]:
            raise ConfigError(f"--lane {lane}: the policy {policy.source} allows only {', '.join(policy.data['lanes']['allowed'])}")
        report_dirs = list(args.report_dir or [])
        if not report_dirs:
            state_dir = getattr(store, "state_dir", None) or os.path.expanduser(os.environ.get("LOCUS_STATE_DIR") or "~/.local/state/locus")
            report_dirs = [os.environ.get("LOCUS_REPORT_DIR") or os.path.join(state_dir, "reports")]
        tools = _mcp_tools.Tools(store, policy=args.policy, inventory=_mcp_tools.Inventory(args.inventory or ()),
                                 report_dirs=report_dirs, lane=lane, transport="http" if args.http else "stdio")
        if args.http:
            host, port = _parse_http(args.http)
            if lane == "private" and not _mcp_tools.is_loopback(host):
                raise ConfigError(f"--http {args.http}: the private lane serves only stdio or a loopback address (127.0.0.1, ::1); "
                                  "use --lane enterprise to serve another address")
            token = _read_token(args.token_file)
            tools.listen = _hostport(host, port)
            serve_http(tools, host, port, token)
            return EXIT_OK
        if args.token_file:
            raise ConfigError("--token-file is for --http; stdio needs no token")
        import anyio

        anyio.run(serve_stdio, tools)
        return EXIT_OK
    except (ConfigError, _policy.PolicyError) as exc:
        print(f"locus: error: {exc}", file=sys.stderr)  # our own words and file names: nothing secret
        return EXIT_USAGE


def add_commands(sub):
    """Register ``locus mcp`` on the ``locus`` parser's subparsers."""
    p = sub.add_parser("mcp", help="Model Context Protocol server for AI assistants (read-only; audited; halt is the only write)",
                       description="Serve the audit trail, the inventory, the guard's state and the reports to an MCP client. "
                                   "stdio by default; --http HOST:PORT serves streamable HTTP with a bearer token. There is no "
                                   "tool that approves, resumes or applies, and no option to add one.")
    p.add_argument("--http", metavar="HOST:PORT", help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (needs a token)")
    p.add_argument("--token-file", help=f"file holding the HTTP bearer token (default ${TOKEN_ENV}); at least {MIN_TOKEN} characters")
    p.add_argument("--lane", choices=LANES,
                   help="data classification of this server (default: the policy's lanes.default); private serves only stdio or loopback")
    p.add_argument("--inventory", "-i", action="append", metavar="SOURCE",
                   help="inventory source for inventory_hosts/inventory_host (repeatable; default: Ansible's configured inventory)")
    p.add_argument("--policy", help="policy file (default: $LOCUS_POLICY, then the shipped default)")
    p.add_argument("--report-dir", action="append", metavar="DIR",
                   help="directory report_get may read (repeatable; default $LOCUS_REPORT_DIR, else <state dir>/reports)")
    p.set_defaults(func=cmd_mcp)
