"""The recorder's queue: requests append without waking the thread, a full queue makes the request
wait for room (never a dropped record), and flush writes everything queued before it."""

from __future__ import annotations

from fhir_server.audit.access import Access
from fhir_server.audit.recorder import Recorder
from fhir_server.store.sql import Store


def _read(i: int) -> Access:
    return Access("GET", "read", "Patient", f"Patient/p{i}", "r", 1_700_000_000_000_000 + i, status=404)


def test_a_full_queue_makes_the_request_wait_for_room_and_drops_nothing(store: Store) -> None:
    recorder = Recorder(store, "http://testserver", queue_size=2, interval=30.0)
    try:
        assert recorder.offer(_read(1)) and recorder.offer(_read(2))
        assert not recorder.offer(_read(3))  # full: the request must wait
        recorder.submit(_read(3))  # waits until the thread (woken by the full queue) made room
        recorder.submit(_read(4))
        recorder.flush()
        with store.read() as tx:
            events = tx.current_of_type("AuditEvent", limit=100)
        named = sorted(e.resource()["entity"][0]["what"]["reference"] for e in events)
        assert named == [f"Patient/p{i}" for i in range(1, 5)]
    finally:
        recorder.close()


def test_records_are_written_at_the_interval_without_a_flush(store: Store) -> None:
    recorder = Recorder(store, "http://testserver", interval=0.05)
    try:
        assert recorder.offer(_read(1))
        for _ in range(100):
            with store.read() as tx:
                if tx.current_of_type("AuditEvent", limit=10):
                    break
            recorder._thread.join(0.05)
        with store.read() as tx:
            assert len(tx.current_of_type("AuditEvent", limit=10)) == 1
    finally:
        recorder.close()
