"""The ollama role's unit and environment templates: the hardening directives, the GPU switch
opening exactly one vendor's device nodes, the limits, and an environment that keeps Ollama on
loopback without cloud models. Rendered with Ansible's own templar from the role's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.template import Templar, trust_as_template

ROLE = Path(__file__).resolve().parents[2] / "roles" / "ollama"


def render(name, **over):
    variables = {**yaml.safe_load((ROLE / "defaults/main.yml").read_text()), **yaml.safe_load((ROLE / "vars/main.yml").read_text())}
    variables.update(ansible_managed="managed", ansible_facts={"architecture": "x86_64"}, inventory_hostname="ollama1", **over)
    return Templar(loader=None, variables=variables).template(trust_as_template((ROLE / "templates" / name).read_text()))


def directives(text):
    return [line for line in text.splitlines() if "=" in line and not line.startswith("#")]


def test_unit_is_hardened_without_gpu():
    unit = directives(render("ollama.service.j2"))
    for wanted in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/ollama", "ProtectHome=yes",
                   "PrivateTmp=yes", "CapabilityBoundingSet=", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                   "SystemCallFilter=@system-service", "PrivateDevices=yes", "MemoryDenyWriteExecute=yes", "User=ollama"):
        assert wanted in unit
    assert not [d for d in unit if d.startswith(("DeviceAllow", "MemoryMax", "CPUQuota", "AmbientCapabilities=CAP"))]


@pytest.mark.parametrize(("gpu", "nodes"), [
    ("nvidia", ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia0", "/dev/nvidia2"]),
    ("amd", ["/dev/kfd", "/dev/dri/renderD128", "/dev/dri/renderD130"]),
])
def test_gpu_switch_opens_exactly_its_device_nodes(gpu, nodes):
    unit = directives(render("ollama.service.j2", ollama_gpu=gpu, ollama_gpu_devices=[0, 2]))
    assert [d.split("=", 1)[1] for d in unit if d.startswith("DeviceAllow=")] == [f"{n} rw" for n in nodes]
    assert "DevicePolicy=closed" in unit and "PrivateDevices=no" in unit and "MemoryDenyWriteExecute=yes" not in unit
    assert ("SupplementaryGroups=render video" in unit) == (gpu == "amd")


def test_limits_and_a_models_dir_outside_home():
    unit = directives(render("ollama.service.j2", ollama_memory_max="24G", ollama_cpu_quota="400%", ollama_models_dir="/srv/models"))
    assert "MemoryMax=24G" in unit and "CPUQuota=400%" in unit
    assert "ReadWritePaths=/var/lib/ollama /srv/models" in unit


def test_environment_keeps_ollama_on_loopback_without_cloud():
    env = directives(render("ollama.env.j2", ollama_environment={"OLLAMA_DEBUG": "1"}))
    assert env == ["OLLAMA_HOST=127.0.0.1:11434", "OLLAMA_MODELS=/var/lib/ollama/models", "OLLAMA_NO_CLOUD=1",
                   "OLLAMA_KEEP_ALIVE=5m", "OLLAMA_NUM_PARALLEL=1", "OLLAMA_CONTEXT_LENGTH=4096", "OLLAMA_DEBUG=1"]
    with_proxy = directives(render("ollama.env.j2", ollama_https_proxy="http://proxy:3128", ollama_no_cloud=False))
    assert "HTTPS_PROXY=http://proxy:3128" in with_proxy and "OLLAMA_NO_CLOUD=0" in with_proxy
    assert not [line for line in with_proxy if line.startswith(("HTTP_PROXY", "http_proxy"))]


def test_the_front_site_sends_the_host_ollama_accepts_and_checks_the_token():
    from ansible_collections.locus.infra.plugins.module_utils import _nginx_model as model

    settings = {"listen": ["10.77.0.31"], "host_addresses": ["10.77.0.31", "127.0.0.1"], "headers": {},
                "zones": [{"name": "ollama_api", "key": "$binary_remote_addr", "size": "10m", "rate": "10r/s"}], "acme": {}}
    site_data = {"name": "ollama.lab.example", "type": "proxy", "upstreams": ["127.0.0.1:11434"], "upstream_host": "localhost:11434",
                 "proxy_read_timeout": "600s", "probe": {"path": "/api/version", "status": [401]},
                 "rate_limit": {"zone": "ollama_api", "burst": 20}, "gzip": False,
                 "extra_directives": ["proxy_buffering off;", "include /etc/ollama/nginx-auth.conf;"]}
    (site,) = model.normalise([site_data], "ollama1", settings)
    assert site["upstream_host"] == "localhost:11434" and site["probe"] == {"path": "/api/version", "status": [401]}
    (default,) = model.normalise([{**site_data, "upstream_host": "$host"}], "ollama1", settings)
    assert default["upstream_host"] == "$host"
    with pytest.raises(model.ModelError, match="upstream_host"):
        model.normalise([{**site_data, "upstream_host": "evil; return 200"}], "ollama1", settings)
    nginx_role = ROLE.parent / "nginx"
    text = Templar(loader=None, variables={"site": site, "nginx_http2": True, "nginx_state_dir": "/var/lib/locus-nginx"}).template(
        trust_as_template((nginx_role / "templates/site.conf.j2").read_text()))
    assert "        proxy_set_header Host localhost:11434;\n" in text
    assert "    proxy_buffering off;\n" in text and "    include /etc/ollama/nginx-auth.conf;\n" in text
    assert "proxy_read_timeout 600s;" in text and "limit_req zone=ollama_api burst=20 nodelay;" in text
