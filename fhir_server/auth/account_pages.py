"""The self-service pages: registration, account sign-in, password change and two-step sign-in set-up.

Built like the login pages (`pages.py`): plain forms without JavaScript, a label for every input,
errors announced (`role="alert"`, each field's problem tied to it with `aria-describedby`), stable
ids for headless browsers, everything interpolated HTML-escaped. Every form carries the session's
form token (`csrf`). A password is never put back into a page. The TOTP set-up shows its key URI
as an inline SVG QR code (`qr_code`). Form actions and links start with `root`, the path of the
base URL (`Settings.base_path`), so the pages work under it.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from . import qr_code
from .pages import _error, _page


def _token(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(csrf)}">\n'


def _field(
    name: str,
    label: str,
    problems: Mapping[str, str],
    *,
    kind: str = "text",
    value: str = "",
    autocomplete: str = "off",
    required: bool = True,
    extra: str = "",
) -> str:
    problem = problems.get(name)
    described = f' aria-describedby="{name}-problem" aria-invalid="true"' if problem else ""
    shown = f' value="{escape(value)}"' if value and kind != "password" else ""
    out = (
        f'<label for="{name}">{escape(label)}</label>\n'
        f'<input type="{kind}" id="{name}" name="{name}" autocomplete="{autocomplete}"'
        f"{shown}{' required' if required else ''}{described}{extra}>\n"
    )
    if problem:
        out += f'<small class="error" id="{name}-problem">{escape(problem)}</small>\n'
    return out


def register(
    csrf: str,
    *,
    root: str,
    invite: bool,
    values: Mapping[str, str] | None = None,
    problems: Mapping[str, str] | None = None,
    error: str | None = None,
) -> str:
    values = values or {}
    problems = problems or {}
    invite_field = (
        _field("invite", "Invite code", problems, value=values.get("invite", ""), extra=' spellcheck="false"')
        if invite
        else ""
    )
    body = (
        "<p>Create an account to see your health record in the apps you use.</p>\n"
        + _error(error or ("Please correct the fields marked below." if problems else None))
        + f'<form method="post" action="{escape(root)}/auth/register" id="register-form">\n'
        + _token(csrf)
        + invite_field
        + _field("given", "Given name(s)", problems, value=values.get("given", ""), autocomplete="given-name")
        + _field(
            "family", "Family name", problems, value=values.get("family", ""), autocomplete="family-name"
        )
        + _field(
            "birthdate",
            "Birth date (YYYY-MM-DD, optional)",
            problems,
            kind="date",
            value=values.get("birthdate", ""),
            autocomplete="bday",
            required=False,
        )
        + _field("username", "Username", problems, value=values.get("username", ""), autocomplete="username")
        + _field(
            "password",
            "Password (at least 8 characters)",
            problems,
            kind="password",
            autocomplete="new-password",
        )
        + _field("password2", "Password again", problems, kind="password", autocomplete="new-password")
        + '<button type="submit" id="register">Create account</button>\n</form>'
    )
    return _page("Create an account", body)


def registered(username: str, *, root: str) -> str:
    body = (
        f'<p id="done">The account <strong>{escape(username)}</strong> is ready. '
        "Sign in with it from your app.</p>\n"
        f'<p><a href="{escape(root)}/auth/account" id="manage">Manage your account</a> '
        "(password, two-step sign-in).</p>"
    )
    return _page("Account created", body)


def sign_in(csrf: str, error: str | None = None, *, root: str) -> str:
    body = (
        "<p>Sign in to change your password or set up two-step sign-in.</p>\n"
        + _error(error)
        + f'<form method="post" action="{escape(root)}/auth/account/login" id="account-login-form">\n'
        + _token(csrf)
        + _field("username", "Username", {}, autocomplete="username", extra=" autofocus")
        + _field("password", "Password", {}, kind="password", autocomplete="current-password")
        + _field(
            "totp",
            "One-time code (only if you set up two-step sign-in)",
            {},
            autocomplete="one-time-code",
            required=False,
            extra=' inputmode="numeric" pattern="[0-9]{6}"',
        )
        + '<button type="submit" id="account-login">Sign in</button>\n</form>'
    )
    return _page("Your account", body)


def account(
    csrf: str,
    username: str,
    *,
    root: str,
    totp_on: bool,
    notice: str | None = None,
    error: str | None = None,
) -> str:
    action = escape(root) + "/auth/account"
    status = "on" if totp_on else "off"
    notice_html = f'<p role="status" id="notice">{escape(notice)}</p>\n' if notice else ""
    body = (
        f"<p>Signed in as <strong>{escape(username)}</strong>.</p>\n"
        + notice_html
        + _error(error)
        + "<h2>Change your password</h2>\n"
        "<p>Apps you signed in to will need you to sign in again.</p>\n"
        f'<form method="post" action="{action}/password" id="password-form">\n'
        + _token(csrf)
        + _field("current", "Current password", {}, kind="password", autocomplete="current-password")
        + _field(
            "new", "New password (at least 8 characters)", {}, kind="password", autocomplete="new-password"
        )
        + _field("new2", "New password again", {}, kind="password", autocomplete="new-password")
        + '<button type="submit" id="change-password">Change password</button>\n</form>\n'
        f'<h2>Two-step sign-in</h2>\n<p>Two-step sign-in is <strong id="totp-state">{status}</strong>.</p>\n'
        f'<form method="post" action="{action}/totp" id="totp-start-form">\n'
        + _token(csrf)
        + '<button type="submit" id="totp-start" name="action" value="start">'
        + ("Set up a new authenticator" if totp_on else "Set up two-step sign-in")
        + "</button>\n</form>\n"
        f'<form method="post" action="{action}/logout" id="logout-form">\n'
        + _token(csrf)
        + '<button type="submit" id="logout">Sign out</button>\n</form>'
    )
    return _page("Your account", body)


def totp_setup(csrf: str, secret: str, uri: str, error: str | None = None, *, root: str) -> str:
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    body = (
        "<p>Add this account to your authenticator app: scan the code, open the link on your phone, "
        "or type the key.</p>\n"
        '<div id="totp-qr" role="img" aria-label="QR code of the set-up link below, for your authenticator app">'
        f"{qr_code.svg(uri)}</div>\n"
        f'<p>Key: <code id="totp-secret">{escape(grouped)}</code></p>\n'
        f'<p><a href="{escape(uri)}" id="totp-uri">{escape(uri)}</a></p>\n'
        + _error(error)
        + "<p>Then enter the six-digit code the app shows, to turn two-step sign-in on.</p>\n"
        f'<form method="post" action="{escape(root)}/auth/account/totp" id="totp-confirm-form">\n'
        + _token(csrf)
        + _field(
            "code",
            "Code from the app",
            {},
            autocomplete="one-time-code",
            extra=' inputmode="numeric" pattern="[0-9]{6}" autofocus',
        )
        + '<button type="submit" id="totp-confirm" name="action" value="confirm">Turn on</button>\n</form>'
    )
    return _page("Set up two-step sign-in", body)


def reset_form(
    csrf: str,
    token: str,
    username: str,
    *,
    root: str,
    problem: str | None = None,
) -> str:
    """The page of an operator-issued reset link: a new password, twice (the link's token rides along)."""
    problems = {"new": problem} if problem else {}
    body = (
        f"<p>Choose a new password for <strong>{escape(username)}</strong>. "
        "Apps you signed in to will need you to sign in again.</p>\n"
        + _error("Please correct the field marked below." if problem else None)
        + f'<form method="post" action="{escape(root)}/auth/reset" id="reset-form">\n'
        + _token(csrf)
        + f'<input type="hidden" name="token" value="{escape(token)}">\n'
        + _field(
            "new",
            "New password (at least 8 characters)",
            problems,
            kind="password",
            autocomplete="new-password",
            extra=" autofocus",
        )
        + _field("new2", "New password again", {}, kind="password", autocomplete="new-password")
        + '<button type="submit" id="reset">Set the new password</button>\n</form>'
    )
    return _page("Choose a new password", body)


def reset_done(*, root: str) -> str:
    body = (
        '<p role="status" id="notice">Your password was changed. Sign in with it from your app.</p>\n'
        f'<p><a href="{escape(root)}/auth/account" id="manage">Manage your account</a> '
        "(password, two-step sign-in).</p>"
    )
    return _page("Password changed", body)


def message(title: str, text: str) -> str:
    return _page(title, f'<p role="alert" id="error">{escape(text)}</p>')
