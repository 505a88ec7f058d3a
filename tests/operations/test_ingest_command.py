"""`fhir-server ingest`: into the configured database (a temporary SQLite file), and with `--to` into a real server on a free localhost port (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from fhir_server.app import create_app
from fhir_server.cli import main
from fhir_server.operations.ingest import Tally
from fhir_server.operations.ingest_command import ProgressBar
from fhir_server.settings import Settings
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import upgrade
from fhir_server.store.sql import Store
from tests.ingest.fixtures import PATIENT, bad_long_csv, long_csv, write
from tests.operations.ingest_sources import create_patient, make, stored, stored_resources, stored_types


@pytest.fixture
def sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A migrated SQLite file with Patient/123, named by FHIR_DATABASE_URL for the command."""
    url = f"sqlite:///{tmp_path / 'fhir.db'}"
    engine = make_engine(url)
    upgrade(engine)
    store = Store(engine, check_references=True)
    create_patient(store)
    monkeypatch.setenv("FHIR_DATABASE_URL", url)
    yield store
    engine.dispose()


@pytest.fixture
def live_server(store: Store, tmp_path: Path) -> Iterator[str]:
    """A uvicorn server over the test store on a free localhost port (no TestClient); its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    app = create_app(Settings(base_url=base, allow_anonymous=True, data_dir=tmp_path / "data"), store=store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield base
    server.should_exit = True
    thread.join(timeout=30)


def test_ingests_into_the_configured_database_and_a_second_run_creates_nothing(
    sqlite_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = long_csv()
    path = write(tmp_path / "long.csv", text)
    assert main(["ingest", str(path), "--patient", PATIENT, "--batch-size", "5"]) == 0
    out = capsys.readouterr().out
    created = stored_types(sqlite_store)
    assert created["Observation"] == len(expected)
    assert f"records read:    {len(expected)}" in out
    assert f"created:         {sum(created.values()) - 1}" in out
    before = stored(sqlite_store)
    assert main(["ingest", str(path), "--format", "csv", "--patient", "123", "--batch-size", "5"]) == 0
    again = capsys.readouterr().out
    assert stored(sqlite_store) == before
    assert "created:         0" in again and f"already present: {sum(created.values()) - 1}" in again


def test_summary_and_problem_report_name_file_and_line(
    sqlite_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, bad = bad_long_csv()
    assert main(["ingest", str(write(tmp_path / "mixed.csv", text)), "--patient", PATIENT]) == 0
    captured = capsys.readouterr()
    assert f"problems:        {len(bad)} ({len(bad)} error)" in captured.out
    report = captured.out.split("Problem report:\n", 1)[1].splitlines()
    assert sorted(line.split(": ")[0].strip() for line in report) == sorted(
        f"mixed.csv:line {n}" for n in bad
    )
    assert "records" in captured.err and "resources" in captured.err  # the progress bar's last state
    assert stored_types(sqlite_store)["Observation"] == 3


def test_timezone_option_places_times_given_without_one(
    sqlite_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "local.csv", "date,metric,value,unit\n2024-03-01T08:06:00,heart_rate,77,/min\n")
    assert main(["ingest", str(path), "--patient", PATIENT]) == 1
    assert "zone" in capsys.readouterr().out
    assert main(["ingest", str(path), "--patient", PATIENT, "--timezone", "Europe/Berlin"]) == 0
    [obs] = stored_resources(sqlite_store, "Observation")
    assert obs["effectiveDateTime"] == "2024-03-01T08:06:00+01:00"


def test_exit_status_is_1_when_nothing_could_be_ingested(
    sqlite_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "bad.csv", "date,metric,value,unit\n2024-03-01T08:00:00Z,heart_rate,x,/min\n")
    assert main(["ingest", str(path), "--patient", PATIENT]) == 1
    out = capsys.readouterr().out
    assert "Nothing could be ingested." in out and "bad.csv:line 2: error:" in out
    assert (
        main(["ingest", str(write(tmp_path / "ok.csv", long_csv()[0])), "--patient", "Patient/nobody"]) == 1
    )
    assert "Patient/nobody" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [["--format", "garmin"], ["--timezone", "Mars/Olympus"], ["--batch-size", "2"], ["--patient", "Group/1"]],
    ids=["unknown-format", "unknown-zone", "tiny-batch", "not-a-patient"],
)
def test_bad_arguments_exit_with_2(
    sqlite_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    path = write(tmp_path / "long.csv", long_csv()[0])
    assert main(["ingest", str(path), "--patient", PATIENT, *args]) == 2
    assert capsys.readouterr().err.startswith("fhir-server ingest: ")
    assert stored_types(sqlite_store)["Observation"] == 0


def test_document_files_go_through_the_command_too(
    sqlite_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for kind in ("text-pdf-lab-report", "dicom-image"):
        source = make(kind, tmp_path / kind)
        assert main(["ingest", str(source.path), "--patient", PATIENT]) == 0
        assert f"({source.format})" in capsys.readouterr().out
    types = stored_types(sqlite_store)
    assert types["DiagnosticReport"] == 1 and types["ImagingStudy"] == 1


def test_to_posts_to_a_running_server_and_a_second_run_creates_nothing(
    live_server: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_patient(store)
    text, bad = bad_long_csv()
    path = write(tmp_path / "mixed.csv", text)
    assert main(["ingest", str(path), "--patient", PATIENT, "--to", live_server, "--batch-size", "3"]) == 0
    out = capsys.readouterr().out
    assert f"-> {live_server}" in out and "created:         5" in out  # 3 Observations, 2 batch Provenances
    assert sum(1 for line in out.splitlines() if line.startswith("  mixed.csv:line ")) == len(bad)
    before = stored(store)
    assert main(["ingest", str(path), "--patient", PATIENT, "--to", live_server, "--batch-size", "3"]) == 0
    assert "created:         0" in capsys.readouterr().out
    assert stored(store) == before


def test_to_reports_batches_the_server_refuses(
    live_server: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "long.csv", long_csv()[0])  # Patient/123 does not exist on that server
    assert main(["ingest", str(path), "--patient", PATIENT, "--to", live_server]) == 1
    out = capsys.readouterr().out
    assert "long.csv:batch 1: error: the server refused this batch: HTTP 422" in out


def test_progress_bar_redraws_one_line_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    bar = ProgressBar(term, "a.csv")
    tally = Tally(file="a.csv", format="csv")
    tally.counts["records"], tally.entries, tally.created = 12, 10, 9
    bar.show(tally, force=True)
    bar.show(tally, force=True)
    bar.clear()
    frames = term.getvalue().split("\r")
    assert "a.csv [" in frames[1] and "12 records, 10 resources (9 created, 0 already present)" in frames[1]
    assert "\n" not in term.getvalue() and frames[-1] == ""
