"""Output file parts resume exactly at their checkpoint (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-output-file-request)."""

from __future__ import annotations

from pathlib import Path

from fhir_server.jobs.output_files import PartWriter, file_path


def test_parts_roll_over_at_the_limit(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, "Patient", "Patient", 2)
    for i in range(5):
        writer.write(b'{"n":%d}' % i)
    writer.close()
    assert [(i["file"], i["count"]) for i in writer.finished] == [
        ("Patient-1.ndjson", 2),
        ("Patient-2.ndjson", 2),
        ("Patient-3.ndjson", 1),
    ]
    assert (tmp_path / "Patient-3.ndjson").read_bytes() == b'{"n":4}\n'


def test_a_resumed_writer_drops_lines_written_after_the_checkpoint(tmp_path: Path) -> None:
    """A killed run's lines after the last checkpoint are truncated away and written once again."""
    first = PartWriter(tmp_path, "Observation", "Observation", 10)
    first.write(b"a")
    first.write(b"b")
    first.sync()
    saved = first.state()
    first.write(b"c-lost")  # after the checkpoint; then the worker dies
    first.sync()
    first.abandon()
    resumed = PartWriter(tmp_path, "Observation", "Observation", 10, saved)
    resumed.write(b"c")
    resumed.close()
    assert (tmp_path / "Observation-1.ndjson").read_bytes() == b"a\nb\nc\n"
    assert resumed.finished == [{"type": "Observation", "file": "Observation-1.ndjson", "count": 3}]


def test_a_resumed_writer_overwrites_a_part_started_after_the_checkpoint(tmp_path: Path) -> None:
    first = PartWriter(tmp_path, "Patient", "Patient", 1)
    first.write(b"1")
    first.sync()
    saved = first.state()
    first.write(b"2-lost")  # rolls over into part 2, then the worker dies
    first.abandon()
    resumed = PartWriter(tmp_path, "Patient", "Patient", 1, saved)
    resumed.write(b"2")
    resumed.close()
    assert (tmp_path / "Patient-2.ndjson").read_bytes() == b"2\n"


def test_only_names_this_server_writes_are_served(tmp_path: Path) -> None:
    job = "0123456789abcdef0123456789abcdef"
    assert file_path(tmp_path, job, "Patient-1.ndjson") == tmp_path / "bulk" / job / "Patient-1.ndjson"
    assert file_path(tmp_path, job, "Bundle-deleted-2.ndjson") is not None
    for bad in ("../x.ndjson", "Patient-1.json", ".ndjson", "Patient-1.ndjson/..", "a/b-1.ndjson"):
        assert file_path(tmp_path, job, bad) is None
    assert file_path(tmp_path, "../etc", "Patient-1.ndjson") is None
