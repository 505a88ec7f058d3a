"""The container files (issue 13): docker-compose.yml is valid for Debian's docker-compose and has a
healthcheck, a restart policy and a one-shot migration the API and the worker wait for; the Dockerfile
is multi-stage, runs as a non-root user and installs with the scripts .ci/run and a developer use.
Images are not built here (base images cannot be pulled on these machines, docs/operations.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        assert not os.environ.get("CI"), "CI installs docker-compose (scripts/system-packages compose)"
        pytest.skip("docker-compose is not installed: scripts/system-packages compose")
    r = subprocess.run(
        [exe, "-f", str(REPO / "docker-compose.yml"), "config"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "FHIR_METRICS_TOKEN": "m"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    resolved = yaml.safe_load(r.stdout)
    server = resolved["services"]["server"]
    assert server["environment"]["FHIR_METRICS_TOKEN"] == "m"
    assert server["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    broken = tmp_path / "broken.yml"
    broken.write_text(
        (REPO / "docker-compose.yml").read_text().replace("restart: unless-stopped", "restart: [x]", 1)
    )
    bad = subprocess.run(
        [exe, "-f", str(broken), "config", "-q"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode != 0  # the check can fail


def test_compose_services_have_healthchecks_restarts_and_a_migration_first() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "server", "worker"}
    for name in ("postgres", "redis", "server"):
        assert "test" in services[name]["healthcheck"], name
    assert "/readyz" in " ".join(services["server"]["healthcheck"]["test"])
    for name in ("postgres", "redis", "server", "worker"):
        assert services[name]["restart"] == "unless-stopped", name
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"] == ["fhir-server", "migrate"]
    for name in ("server", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"] == {"condition": "service_completed_successfully"}
        assert deps["postgres"] == {"condition": "service_healthy"}
        assert services[name]["volumes"] == ["fhir-data:/var/lib/fhir/data"]  # keys and export files shared
    assert services["worker"]["command"] == ["fhir-server", "worker"]


def test_dockerfile_is_multi_stage_non_root_and_uses_the_install_scripts() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)", text, re.M)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    users = re.findall(r"^USER (\S+)", runtime, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert "system-packages runtime" in runtime and "HEALTHCHECK" in runtime
    assert "FHIR_BOOTSTRAP=image" in text and "scripts/bootstrap" in text
    assert "spec_package" in text.split("AS runtime", 1)[0]  # HL7's package fetched at build time
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/system-packages" in ci and "apt-get install" not in ci  # one list of packages
    roles = (REPO / "scripts" / "system-packages").read_text()
    assert "tesseract-ocr" in roles and "fonts-dejavu-core" in roles
