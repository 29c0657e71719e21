"""The Ollama API double speaks the wire format docs/api.md describes (raw HTTP here, no client
library), stores models in Ollama's own layout with real digests, and ships as an installable
release artefact whose ``bin/ollama serve`` behaves like the real command."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import subprocess
import tarfile
from pathlib import Path

import jsonschema
import pytest
from doubles.ollama_api import OllamaDouble, build_release, file_digest, parse_name, smollm2_path, stand_in

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["risk", "summary", "findings", "score"],
    "properties": {
        "risk": {"enum": ["low", "medium", "high"]},
        "summary": {"type": "string", "minLength": 10, "maxLength": 30},
        "findings": {"type": "array", "items": {"type": "string", "minLength": 5}, "minItems": 2},
        "score": {"type": "integer", "minimum": 3},
        "note": {"type": "string"},
    },
}


def call(url, method, path, body=None, host=None):
    """(status, headers, raw body) of one request, without a client library."""
    address = url.removeprefix("http://")
    conn = http.client.HTTPConnection(address, timeout=60)
    headers = {"Host": host} if host else {}
    data = json.dumps(body) if body is not None else None
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    conn.close()
    return out


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    lib = tmp_path_factory.mktemp("library")
    (lib / "smollm2").mkdir()
    (lib / "smollm2" / "135m.gguf").symlink_to(smollm2_path())
    (lib / "broken").mkdir()
    (lib / "broken" / "latest.gguf").write_bytes(b"not the file the registry describes\n")
    (lib / "broken" / "latest.gguf.sha256").write_text("0" * 64 + "\n")
    return lib


@pytest.fixture
def api(library, tmp_path):
    with OllamaDouble(models={}, models_dir=str(tmp_path / "models"), library=str(library), inference="stand-in", no_cloud=True) as d:
        yield d


def test_pull_streams_progress_with_real_digests_and_stores_ollamas_layout(api, tmp_path):
    status, headers, raw = call(api.url, "POST", "/api/pull", {"model": "smollm2:135m"})
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(x) for x in raw.splitlines()]
    gguf = file_digest(smollm2_path())
    assert lines[0] == {"status": "pulling manifest"}
    assert {"status": f"pulling {gguf[7:19]}", "digest": gguf, "total": os.path.getsize(smollm2_path()),
            "completed": os.path.getsize(smollm2_path())} in lines
    assert [x["status"] for x in lines[-4:]] == ["verifying sha256 digest", "writing manifest", "removing any unused layers", "success"]
    manifest_file = tmp_path / "models/manifests/registry.ollama.ai/library/smollm2/135m"
    manifest = json.loads(manifest_file.read_text())
    assert manifest["layers"][0]["digest"] == gguf
    blob = tmp_path / "models/blobs" / gguf.replace(":", "-")
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == gguf
    (model,) = json.loads(call(api.url, "GET", "/api/tags")[2])["models"]
    assert model["name"] == model["model"] == "smollm2:135m"
    assert model["digest"] == hashlib.sha256(manifest_file.read_bytes()).hexdigest()
    assert model["size"] == manifest["layers"][0]["size"] + manifest["config"]["size"]
    assert model["details"] == {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                                "parameter_size": "134.52M", "quantization_level": "Q4_1"}
    status, _h, raw = call(api.url, "POST", "/api/show", {"model": "smollm2:135m"})
    assert status == 200 and json.loads(raw)["details"]["quantization_level"] == "Q4_1"
    assert json.loads(raw)["model_info"]["general.parameter_count"] == 134515008


def test_a_failure_after_the_download_is_an_error_line_in_a_200_stream(api, tmp_path):
    status, _h, raw = call(api.url, "POST", "/api/pull", {"model": "broken"})
    lines = [json.loads(x) for x in raw.splitlines()]
    assert status == 200
    assert lines[-2] == {"status": "verifying sha256 digest"}
    assert lines[-1]["error"].startswith("digest mismatch, file must be downloaded again: want sha256:" + "0" * 64 + ", got sha256:")
    assert json.loads(call(api.url, "GET", "/api/tags")[2])["models"] == []
    assert not list((tmp_path / "models/blobs").glob("sha256-0000*"))  # the bad blob is removed, as Ollama does
    status, _h, raw = call(api.url, "POST", "/api/pull", {"model": "nope:1b"})
    assert status == 200 and [json.loads(x) for x in raw.splitlines()] == [
        {"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    status, _h, raw = call(api.url, "POST", "/api/pull", {"model": "broken", "stream": False})
    assert status == 500 and json.loads(raw)["error"].startswith("digest mismatch")


def test_delete_show_and_errors_have_ollamas_shapes(api):
    assert call(api.url, "POST", "/api/pull", {"model": "smollm2:135m", "stream": False})[:1] == (200,)
    assert call(api.url, "DELETE", "/api/delete", {"model": "smollm2"})[0] == 404  # smollm2:latest
    assert json.loads(call(api.url, "DELETE", "/api/delete", {"model": "x:1"})[2]) == {"error": "model 'x:1' not found"}
    assert call(api.url, "POST", "/api/show", {"model": "x:1"})[0] == 404
    assert call(api.url, "POST", "/api/pull", None)[:1] == (400,)
    status, _h, raw = call(api.url, "DELETE", "/api/delete", {"model": "smollm2:135m"})
    assert (status, raw) == (200, b"")
    assert json.loads(call(api.url, "GET", "/api/tags")[2])["models"] == []
    assert not os.listdir(os.path.join(api.models_dir, "blobs"))  # unused layers removed
    assert json.loads(call(api.url, "GET", "/api/version")[2]) == {"version": "0.13.5"}


def test_loopback_server_refuses_foreign_host_headers(api):
    # allowedHostsMiddleware: what a proxy must send is a local name (nginx: upstream_host)
    assert call(api.url, "GET", "/api/version", host="ollama.lab.example")[0] == 403
    assert call(api.url, "GET", "/api/version", host="localhost:11434")[0] == 200
    assert call(api.url, "GET", "/api/version", host="gpu.internal")[0] == 200


def test_stand_in_chat_is_schema_valid_and_cloud_models_are_refused(api):
    call(api.url, "POST", "/api/pull", {"model": "smollm2:135m", "stream": False})
    body = {"model": "smollm2:135m", "stream": False, "format": SCHEMA, "messages": [{"role": "user", "content": "rate it"}]}
    status, _h, raw = call(api.url, "POST", "/api/chat", body)
    reply = json.loads(raw)
    answer = json.loads(reply["message"]["content"])
    jsonschema.validate(answer, SCHEMA)
    assert status == 200 and reply["done"] and reply["prompt_eval_count"] == 2 and reply["eval_count"] > 0
    assert answer == stand_in(SCHEMA) and "note" not in answer and answer["score"] == 3
    status, _h, raw = call(api.url, "POST", "/api/chat", {"model": "gpt-oss:120b-cloud", "messages": [{"role": "user", "content": "x"}]})
    assert (status, json.loads(raw)) == (403, {"error": "ollama cloud is disabled: remote model is unavailable"})


@pytest.mark.parametrize(("name", "parts"), [
    ("llama3.2", ("registry.ollama.ai", "library", "llama3.2", "latest")),
    ("me/model:7b-q4_K_M", ("registry.ollama.ai", "me", "model", "7b-q4_K_M")),
    ("hf.co/org/m:Q4", ("hf.co", "org", "m", "Q4")),
    ("bad name", None),
    (":tag", None),
])
def test_model_names(name, parts):
    assert parse_name(name) == parts


def test_release_artefact_installs_and_serves_like_ollama(tmp_path, library):
    path, digest, changed = build_release(str(tmp_path / "rel"))
    again = build_release(str(tmp_path / "rel"))
    assert changed and again == (path, digest, False)  # reproducible
    assert (tmp_path / "rel/sha256sum.txt").read_text() == f"{digest}  ./ollama-linux-amd64.tgz\n"
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest
    with tarfile.open(path) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "usr", filter="data")
    assert "bin/ollama" in names and "lib/ollama/doubles/ollama_api.py" in names
    ollama = str(tmp_path / "usr/bin/ollama")
    assert subprocess.run([ollama, "--version"], capture_output=True, text=True, check=True).stdout == "ollama version is 0.13.5\n"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": "/usr/bin:/bin", "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp_path / "models"),
           "OLLAMA_DOUBLE_LIBRARY": str(library), "OLLAMA_NO_CLOUD": "1", "HTTPS_PROXY": "http://user:secret@proxy:3128"}
    # Debian's python3 (what the lab host runs): the artefact needs nothing outside the standard library
    proc = subprocess.Popen(["/usr/bin/python3", "-I", ollama, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        log = [proc.stderr.readline(), proc.stderr.readline()]
        assert log[1].startswith(f"Listening on 127.0.0.1:{port}")
        assert "secret" not in log[0] and '"OLLAMA_NO_CLOUD": "1"' in log[0]
        url = f"http://127.0.0.1:{port}"
        status, _h, raw = call(url, "POST", "/api/pull", {"model": "smollm2:135m"})
        assert status == 200 and json.loads(raw.splitlines()[-1]) == {"status": "success"}
        reply = json.loads(call(url, "POST", "/api/chat", {"model": "smollm2:135m", "stream": False,
                                                           "messages": [{"role": "user", "content": "hi"}]})[2])
        assert reply["message"]["content"].startswith("Stand-in answer")  # no llama_cpp for Debian's python3
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "models/manifests/registry.ollama.ai/library/smollm2/135m").is_file()


def test_release_of_another_version_reports_it(tmp_path):
    """Two releases, as an upgrade needs: the artefact differs and the installed binary and API report its version."""
    _p1, first, _c1 = build_release(str(tmp_path / "a"))
    path, other, _c2 = build_release(str(tmp_path / "b"), version="0.13.6")
    assert other != first
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "usr", filter="data")
    assert (tmp_path / "usr/lib/ollama/VERSION").read_text() == "0.13.6\n"
    out = subprocess.run(["/usr/bin/python3", "-I", str(tmp_path / "usr/bin/ollama"), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == "ollama version is 0.13.6\n"
    with OllamaDouble(models={}, version="0.13.6") as api:
        assert json.loads(call(api.host, "GET", "/api/version")[2]) == {"version": "0.13.6"}
