"""locus.infra.ollama_model's logic against the Ollama API double, through both transports (the
``ollama`` client and the standard library): idempotence, check mode, diff, digests, and a pull
that fails mid-stream while the HTTP status is 200."""

from __future__ import annotations

import base64

import pytest
from doubles.ollama_api import OllamaDouble, smollm2_path

from ansible_collections.locus.infra.plugins.module_utils import _ollama_model as om


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    lib = tmp_path_factory.mktemp("library")
    (lib / "smollm2").mkdir()
    (lib / "smollm2" / "135m.gguf").symlink_to(smollm2_path())
    (lib / "smollm2" / "latest.gguf").symlink_to(smollm2_path())
    (lib / "broken").mkdir()
    (lib / "broken" / "latest.gguf").write_bytes(b"corrupt\n")
    (lib / "broken" / "latest.gguf.sha256").write_text("ab" * 32)
    return lib


@pytest.fixture
def double(library, tmp_path):
    with OllamaDouble(models={}, models_dir=str(tmp_path / "models"), library=str(library), inference="stand-in") as d:
        yield d


@pytest.fixture(params=["client", "urllib"])
def transport(request):
    return request.param == "client"


def test_present_pulls_once_then_changes_nothing(double, transport):
    api = om.connect(double.host, use_client=transport)
    assert type(api).__name__ == ("ClientTransport" if transport else "UrllibTransport")
    first = om.ensure(api, "smollm2:135m")
    tags = {m["name"]: m for m in om.connect(double.host, use_client=False).tags()}
    assert first["changed"] and first["state"] == "present"
    assert first["digest"] == tags["smollm2:135m"]["digest"] and first["size"] == tags["smollm2:135m"]["size"] > 90_000_000
    assert first["pull"][0] == "pulling manifest" and first["pull"][-1] == "success"
    assert first["diff"] == {"before": {"state": "absent"}, "after": {"state": "present", "digest": first["digest"], "size": first["size"]}}
    second = om.ensure(api, "smollm2:135m")
    assert not second["changed"] and second["digest"] == first["digest"] and second["pull"] == []
    assert [r["path"] for r in double.requests].count("/api/pull") == 1


def test_latest_is_normalised(double, transport):
    api = om.connect(double.host, use_client=transport)
    assert om.ensure(api, "smollm2")["model"] == "smollm2:latest"
    assert not om.ensure(api, "smollm2:latest")["changed"]
    assert om.ensure(api, "smollm2:latest", "absent")["changed"]
    assert not om.ensure(api, "smollm2", "absent")["changed"]


def test_check_mode_predicts_and_changes_nothing(double, transport):
    api = om.connect(double.host, use_client=transport)
    predicted = om.ensure(api, "smollm2:135m", check_mode=True)
    assert predicted["changed"] and predicted["state"] == "present" and predicted["digest"] is None
    assert api.tags() == [] and "/api/pull" not in [r["path"] for r in double.requests]
    real = om.ensure(api, "smollm2:135m")
    removal = om.ensure(api, "smollm2:135m", "absent", check_mode=True)
    assert removal["changed"] and removal["diff"]["before"]["digest"] == real["digest"] and removal["diff"]["after"] == {"state": "absent"}
    assert [m["name"] for m in api.tags()] == ["smollm2:135m"]
    assert "DELETE" not in [r["method"] for r in double.requests]


def test_absent_removes_with_delete(double, transport):
    api = om.connect(double.host, use_client=transport)
    om.ensure(api, "smollm2:135m")
    gone = om.ensure(api, "smollm2:135m", "absent")
    assert gone["changed"] and gone["state"] == "absent" and gone["digest"] is None
    assert [r["body"] for r in double.requests if r["method"] == "DELETE"] == [{"model": "smollm2:135m"}]
    assert api.tags() == []


def test_error_line_in_a_200_stream_fails_naming_model_step_and_error(double, transport):
    api = om.connect(double.host, use_client=transport)
    with pytest.raises(om.OllamaModelError) as info:
        om.ensure(api, "broken")
    msg = str(info.value)
    assert msg.startswith(f"model broken:latest on {double.host}: pull failed after 'verifying sha256 digest': ")
    assert "digest mismatch, file must be downloaded again: want sha256:" + "ab" * 32 in msg
    assert double.responses[-1]["status"] == 200 and "error" in double.responses[-1]["body"][-1]
    with pytest.raises(om.OllamaModelError, match="pull failed after 'pulling manifest': pull model manifest: file does not exist"):
        om.ensure(api, "missing:7b")


def test_http_errors_and_unreachable_hosts_are_named(double):
    with pytest.raises(om.OllamaModelError, match=r"listing the models \(/api/tags\) failed: HTTP 404: 404 page not found"):
        om.ensure(om.connect(double.host + "/nothing", use_client=False), "smollm2")
    with pytest.raises(om.OllamaModelError, match="cannot reach http://127.0.0.1:9"):
        om.ensure(om.connect("127.0.0.1:9", use_client=False, timeout=2), "smollm2")


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"token": "tok-0123456789abcdef"}, "Bearer tok-0123456789abcdef"),
    ({"username": "ops", "password": "pw:with:colons"}, "Basic " + base64.b64encode(b"ops:pw:with:colons").decode()),
])
def test_credentials_travel_as_authorization(double, transport, kwargs, expected):
    om.ensure(om.connect(double.host, use_client=transport, **kwargs), "smollm2:135m", "absent")
    assert double.requests[-1]["headers"]["authorization"] == expected


@pytest.mark.parametrize("name", ["", "bad name", "a:b:c", ":latest", None, "x/" * 5 + "y"])
def test_invalid_names_are_refused(name):
    with pytest.raises(ValueError, match="is not an Ollama model name"):
        om.normalise(name)


# -- https:// with server_name: a TLS front on loopback (SNI recorded) forwarding to the double --------


@pytest.fixture(scope="module")
def front_cert(tmp_path_factory):
    """A self-signed certificate for ollama-front.internal, like the ollama role's nginx front."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ollama-front.internal")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("ollama-front.internal")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("front")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d


@pytest.fixture
def front(double, front_cert):
    """TLS on 127.0.0.1 (the certificate above), every connection piped to the double; ``sni`` lists the names asked for.

    A pipe passes the Host header on unchanged, so the name ends in ``.internal``, one that Ollama's
    allowedHostsMiddleware (and the double) let through on loopback; nginx in front rewrites it instead.
    """
    import socket
    import ssl
    import threading

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(front_cert / "cert.pem", front_cert / "key.pem")
    seen = []
    ctx.sni_callback = lambda _sock, name, _ctx: seen.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(double.host.rsplit(":", 1)[1])

    def pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while True:
            try:
                conn, _addr = listener.accept()
            except OSError:
                return
            try:
                tls = ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", port))
            threading.Thread(target=pipe, args=(tls, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, tls), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield {"host": f"https://127.0.0.1:{listener.getsockname()[1]}", "ca": str(front_cert / "cert.pem"), "sni": seen}
    listener.close()


def test_https_by_address_with_server_name_sni_host_and_certificate(double, front, transport):
    api = om.connect(front["host"], server_name="ollama-front.internal", ca_path=front["ca"], token="tok-0123456789abcdef",
                     use_client=transport)
    pulled = om.ensure(api, "smollm2:135m")
    assert pulled["changed"] and pulled["pull"][-1] == "success" and pulled["host"] == front["host"]
    with pytest.raises(om.OllamaModelError, match="^model broken:latest on https://127.0.0.1:[0-9]+: pull failed after 'verifying sha256 digest'"):
        om.ensure(api, "broken")
    assert not om.ensure(api, "smollm2:135m")["changed"]
    assert om.ensure(api, "smollm2:135m", "absent")["changed"]
    port = front["host"].rsplit(":", 1)[1]
    assert {r["headers"]["host"] for r in double.requests} == {f"ollama-front.internal:{port}"}
    assert {r["headers"]["authorization"] for r in double.requests} == {"Bearer tok-0123456789abcdef"}
    assert set(front["sni"]) == {"ollama-front.internal"}


@pytest.mark.parametrize("case", ["untrusted", "wrong name"])
def test_https_certificate_is_checked(double, front, transport, case):
    kwargs = {"server_name": "ollama-front.internal"} if case == "untrusted" else {"server_name": "other-front.internal", "ca_path": front["ca"]}
    reason = "certificate verify failed: self-signed certificate" if case == "untrusted" else "Hostname mismatch"
    with pytest.raises(om.OllamaModelError, match=r"listing the models \(/api/tags\) failed: cannot reach https://127.0.0.1:[0-9]+: .*" + reason):
        om.ensure(om.connect(front["host"], use_client=transport, timeout=5, **kwargs), "smollm2")
    assert double.requests == []
    unchecked = om.connect(front["host"], use_client=transport, validate_certs=False, **{k: v for k, v in kwargs.items() if k != "ca_path"})
    assert not om.ensure(unchecked, "smollm2", "absent")["changed"]


def test_server_name_needs_https(double):
    with pytest.raises(om.OllamaModelError, match="server_name 'ollama-front.internal' needs an https:// host"):
        om.connect(double.host, server_name="ollama-front.internal")
