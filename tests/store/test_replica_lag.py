"""The replay lag a replica is judged by, and the pin keys of callers (store/replicas.py)."""

from __future__ import annotations

from sqlalchemy import create_engine

from fhir_server.store.replicas import Replica, reader_key


def _replica() -> Replica:
    return Replica(0, create_engine("sqlite://"))


def test_a_replica_that_replayed_all_it_received_has_no_lag_even_when_the_primary_is_idle() -> None:
    replica = _replica()
    assert replica.lag(10.0, 500, 500, since_replayed_commit=3600.0) == 0.0


def test_the_lag_is_the_age_of_the_newest_check_whose_received_wal_is_replayed() -> None:
    replica = _replica()
    assert replica.lag(0.0, 100, 100, None) == 0.0
    assert replica.lag(1.0, 200, 200, None) == 0.0
    assert replica.lag(3.0, 300, 150, None) == 3.0  # what arrived by t=1 is not replayed yet
    assert replica.lag(4.0, 300, 250, None) == 3.0  # by t=1 yes, by t=3 not
    assert replica.lag(5.0, 300, 300, None) == 0.0


def test_without_an_earlier_check_the_time_since_the_last_replayed_commit_is_used() -> None:
    replica = _replica()
    assert replica.lag(0.0, 300, 100, since_replayed_commit=7.5) == 7.5


def test_pin_keys_are_per_client_and_user_and_hold_neither_id() -> None:
    keys = {
        reader_key("app", "alice"),
        reader_key("app", "bob"),
        reader_key("other", "alice"),
        reader_key("app", None),
    }
    assert len(keys) == 4
    assert all("alice" not in k and "app" not in k and len(k) == 64 for k in keys)
