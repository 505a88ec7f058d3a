"""The layers of the package, enforced by import-linter (pyproject.toml `[tool.importlinter]`, docs/for-engineers.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """Run the contract of pyproject.toml on the `fhir_server` package found in `package_parent`."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=package_parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_package_keeps_its_layers() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_an_import_from_a_higher_layer_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "fhir_server", tmp_path / "fhir_server", ignore=shutil.ignore_patterns("__pycache__")
    )
    store_module = tmp_path / "fhir_server" / "store" / "contention.py"
    store_module.write_text(store_module.read_text() + "\nfrom ..api import routes  # noqa: E402, F401\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "fhir_server.store.contention -> fhir_server.api.routes" in result.stdout
