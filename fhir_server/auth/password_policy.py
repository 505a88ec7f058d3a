"""The rules a new password must meet (NIST SP 800-63B section 5.1.1.2, memorized secrets).

Length counts: at least 8 characters, at most 256 (so a passphrase always fits, and hashing stays
bounded); every printable character and space is allowed. No composition rules (they make passwords
weaker, not stronger), but a password is refused when it is a commonly used one, one character
repeated, a run like "12345678", or contains the username or the server's name. The reason is
given to the person choosing it; the password itself is never echoed or logged.
"""

from __future__ import annotations

import unicodedata

MIN_LENGTH = 8
MAX_LENGTH = 256
_CONTEXT_WORDS = ("fhir-server", "fhirserver")
_RUNS = ("0123456789", "9876543210", "abcdefghijklmnopqrstuvwxyz", "qwertyuiop", "asdfghjkl", "zxcvbnm")

# Passwords that top every published list of the most used (and so first guessed) ones.
COMMON = frozenset(
    [
        "password",
        "password1",
        "password12",
        "password123",
        "passw0rd",
        "p@ssw0rd",
        "p@ssword",
        "iloveyou",
        "iloveyou1",
        "sunshine",
        "sunshine1",
        "princess",
        "princess1",
        "football",
        "football1",
        "baseball",
        "baseball1",
        "welcome",
        "welcome1",
        "welcome123",
        "letmein",
        "letmein1",
        "trustno1",
        "superman",
        "batman123",
        "starwars",
        "whatever",
        "dragon123",
        "monkey123",
        "master123",
        "shadow123",
        "michael1",
        "jennifer",
        "computer",
        "internet",
        "changeme",
        "changeme1",
        "qwerty123",
        "qwerty1234",
        "1q2w3e4r",
        "1q2w3e4r5t",
        "zaq12wsx",
        "zaq1zaq1",
        "abc12345",
        "abcd1234",
        "a1b2c3d4",
        "admin123",
        "administrator",
        "secret123",
        "letmein123",
        "hello123",
        "freedom1",
        "whatever1",
        "charlie1",
        "loveyou1",
        "lovely123",
        "mustang1",
        "access14",
        "123qweasd",
        "qweasdzxc",
        "asdf1234",
        "asdfasdf",
        "1qaz2wsx",
        "1qazxsw2",
        "q1w2e3r4",
        "q1w2e3r4t5",
        "iloveu123",
        "myspace1",
        "football12",
        "liverpool",
        "chelsea1",
        "arsenal1",
        "pokemon1",
        "minecraft",
        "fortnite",
    ]
)


class WeakPassword(ValueError):
    """The password breaks a rule; the message says which (never the password)."""


def check(password: str, username: str = "") -> str:
    """`password` when it meets every rule, else `WeakPassword` with the reason."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"The password must have at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"The password must have at most {MAX_LENGTH} characters.")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in password):
        raise WeakPassword("The password must not contain control characters.")
    folded = password.casefold()
    if folded in COMMON or folded.rstrip("!.?1") in COMMON:
        raise WeakPassword("This password is too common. Please choose another.")
    if len(set(folded)) == 1 or any(folded in run or folded in run * 2 for run in _RUNS):
        raise WeakPassword("The password must not be one character repeated or a simple sequence.")
    name = username.strip().casefold()
    if len(name) >= 3 and name in folded:
        raise WeakPassword("The password must not contain the username.")
    if any(word in folded for word in _CONTEXT_WORDS):
        raise WeakPassword("The password must not contain the name of this service.")
    return password
