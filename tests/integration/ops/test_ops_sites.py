"""ops_sites: many sites asked at once from the controller against real loopback HTTP servers - the
answers in order, a site not answering as an answer (not a failure), bad input named."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils.ops import _ops_sites


class _Slow(http.server.BaseHTTPRequestHandler):
    """Counts the requests in flight at once (``peak``) while each takes a moment."""

    lock, current, peak = threading.Lock(), 0, 0

    def do_GET(self):  # noqa: N802 - http.server's name
        cls = type(self)
        with cls.lock:
            cls.current += 1
            cls.peak = max(cls.peak, cls.current)
        time.sleep(0.5)
        with cls.lock:
            cls.current -= 1
        self.send_response(503 if self.path == "/down" else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(f"{self.headers['Host']}"[:2].encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sites_are_asked_in_parallel_and_answered_in_order(server):
    sites = [{"name": f"s{n}.lab.example", "address": "127.0.0.1", "port": server, "scheme": "http"} for n in range(8)]
    sites += [{"name": "down.lab.example", "address": "127.0.0.1", "port": server, "scheme": "http", "path": "/down", "expected": [200, 204]},
              {"name": "gone.lab.example", "address": "[127.0.0.1]", "port": _closed_port(), "scheme": "http"}]
    _Slow.peak = 0
    answers = _ops_sites.probe_all(sites, "web1", timeout=5)
    assert [a["name"] for a in answers] == [s["name"] for s in sites]
    assert all(a["status"] == 200 and a["host"] == "web1" and a["tls"] is False for a in answers[:8])
    assert answers[8]["status"] == 503 and answers[8]["expected"] == [200, 204]
    assert answers[9]["status"] is None and "Connection refused" in answers[9]["error"]
    assert _Slow.peak > 1  # the server saw several requests in flight at once: asked in parallel, not one by one


@pytest.mark.parametrize(("sites", "message"), [
    (["www"], "sites[0] must be a mapping, got str"),
    ([{"name": "www", "address": "127.0.0.1"}], "sites[0] (www): port required"),
    ([{"address": "127.0.0.1", "port": 80}], "sites[0] (no name): name required"),
    ([{"name": "www", "address": "127.0.0.1", "port": 70000}], "sites[0] (www): port 70000 is not a TCP port"),
    ([{"name": "www", "address": "127.0.0.1", "port": 80, "scheme": "gopher"}], "sites[0] (www): scheme must be http or https, got 'gopher'"),
])
def test_bad_input_names_the_site_and_key(sites, message):
    with pytest.raises(_ops_sites.SitesError) as exc:
        _ops_sites.probe_all(sites, "web1")
    assert str(exc.value) == message
