"""`fhir-server profiles add <.tgz>`: an operator's package makes its profiles validate claimed resources."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import orjson

from fhir_server import spec_package
from profiles import packages, validator
from tests import factories

URL = "http://example.org/fhir/StructureDefinition/clinic-heartrate"


def _package(tmp: Path) -> Path:
    sd = orjson.loads((spec_package.ensure() / "StructureDefinition-heartrate.json").read_bytes())
    sd.update(url=URL, id="clinic-heartrate", name="ClinicHeartRate")
    files = {
        "package/package.json": orjson.dumps({"name": "example.clinic", "version": "1.0.0"}),
        "package/StructureDefinition-clinic-heartrate.json": orjson.dumps(sd),
    }
    path = tmp / "example.clinic-1.0.0.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_added_package_validates_the_resources_that_claim_its_profiles(tmp_path: Path) -> None:
    obs = factories.observation("p1", meta={"profile": [URL]})
    obs["valueQuantity"]["code"] = "bpm"
    before = [i for i in validator.issues(obs, unknown_profiles="error") if i.severity == "error"]
    assert [i.code for i in before] == ["not-supported"]  # unknown until added
    target = packages.install(str(_package(tmp_path)), tmp_path / "data")
    assert packages.installed(tmp_path / "data") == [("example.clinic", "1.0.0", target)]
    assert packages.profiles_of(target) == [URL]
    after = [i for i in validator.issues(obs, unknown_profiles="error") if i.severity == "error"]
    assert [(i.code, i.expression) for i in after] == [("value", ("Observation.valueQuantity.code",))]
