"""The self-registration form, read into a checked `Registration` (https://hl7.org/fhir/R4/patient.html).

Every field is text from a browser: each is checked for length and content, the birth date is a
real past date, the password meets `password_policy` and was typed twice the same. All problems are
reported together, by field, in words for the person filling the form; nothing they typed is
logged. The names and birth date become the new Patient; the invite code is checked later, against
the stored codes.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import password_policy, users

MAX_NAME = 100
EARLIEST_BIRTH = datetime.date(1900, 1, 1)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Registration:
    username: str
    password: str = field(repr=False)
    given: tuple[str, ...]
    family: str
    birth_date: str | None  # YYYY-MM-DD
    invite: str = field(default="", repr=False)

    def patient(self) -> dict[str, Any]:
        """The Patient resource this person's record starts with."""
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "active": True,
            "name": [{"use": "official", "family": self.family, "given": list(self.given)}],
        }
        if self.birth_date is not None:
            resource["birthDate"] = self.birth_date
        return resource


class FormProblems(ValueError):
    """What is wrong with the form: field name -> message."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


def parse(form: Mapping[str, str], *, today: datetime.date, need_invite: bool) -> Registration:
    """The registration in `form`, or `FormProblems` naming every field that is wrong."""
    problems: dict[str, str] = {}
    username = form.get("username", "").strip()
    try:
        users.check_username(username)
    except users.UserError:
        problems["username"] = "Use 1 to 128 letters, digits or . _ @ + -"
    given = _name(form.get("given", ""), "given", problems)
    family = _name(form.get("family", ""), "family", problems)
    birth_date = _birth_date(form.get("birthdate", "").strip(), today, problems)
    password = form.get("password", "")
    try:
        password_policy.check(password, username)
    except password_policy.WeakPassword as weak:
        problems["password"] = str(weak)
    if "password" not in problems and form.get("password2", "") != password:
        problems["password2"] = "The two passwords differ."
    invite = form.get("invite", "").strip()
    if need_invite and not invite:
        problems["invite"] = "Enter the invite code you were given."
    if problems:
        raise FormProblems(problems)
    return Registration(username, password, tuple(given.split()), family, birth_date, invite)


def _name(text: str, key: str, problems: dict[str, str]) -> str:
    value = " ".join(text.split())
    if not value:
        problems[key] = "This name is required."
    elif len(value) > MAX_NAME:
        problems[key] = f"Use at most {MAX_NAME} characters."
    elif any(unicodedata.category(c)[0] in "CZ" and c != " " for c in value):
        problems[key] = "Use letters, spaces and punctuation only."
    elif not any(c.isalpha() for c in value):
        problems[key] = "A name needs at least one letter."
    return value


def _birth_date(text: str, today: datetime.date, problems: dict[str, str]) -> str | None:
    if not text:
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        born = datetime.date.fromisoformat(text)
    except ValueError:
        problems["birthdate"] = "Enter the date as YYYY-MM-DD."
        return None
    if not EARLIEST_BIRTH <= born <= today:
        problems["birthdate"] = "Enter a date between 1900 and today."
        return None
    return born.isoformat()
