"""The authorization server's HTML pages: login, patient picker, consent, error (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#obtain-authorization-code).

Plain server-rendered forms that work without JavaScript and with assistive technology: every input
has a label, errors are announced (`role="alert"`), buttons have stable ids so a headless browser
can drive them. Everything interpolated is HTML-escaped. Form actions and links start with `root`,
the path of the base URL (`Settings.base_path`, "" or e.g. "/fhir"), so the pages work under it.
"""

from __future__ import annotations

from html import escape

from .authorization_flow import ConsentStep, ErrorStep, LoginStep, PatientStep

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#111}
label{display:block;margin-top:.75rem}input[type=text],input[type=password]{width:100%;padding:.4rem;font-size:1rem}
button{margin-top:1rem;margin-right:.5rem;padding:.5rem 1rem;font-size:1rem}
.error{color:#a00;font-weight:bold}fieldset{margin-top:1rem}fieldset label{display:flex;gap:.5rem;align-items:baseline}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n<h1>{escape(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert" id="error">{escape(message)}</p>\n' if message else ""


def _handle(handle: str) -> str:
    return f'<input type="hidden" name="request" value="{escape(handle)}">\n'


def login(step: LoginStep, *, root: str, registration: bool = False) -> str:
    """The login form; `registration`: link to self-registration (opened beside the app's sign-in)."""
    body = (
        f"<p><strong>{escape(step.client_name)}</strong> asks to access health records. "
        "Please sign in.</p>\n"
        + _error(step.error)
        + f'<form method="post" action="{escape(root)}/auth/login" id="login-form">\n'
        + _handle(step.handle)
        + '<label for="username">Username</label>\n'
        '<input type="text" id="username" name="username" autocomplete="username" required autofocus>\n'
        '<label for="password">Password</label>\n'
        '<input type="password" id="password" name="password" autocomplete="current-password" required>\n'
        '<label for="totp">One-time code (only if you set up two-step sign-in)</label>\n'
        '<input type="text" id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code" '
        'pattern="[0-9]{6}" aria-describedby="totp-help">\n'
        '<small id="totp-help">Six digits from your authenticator app.</small><br>\n'
        '<button type="submit" id="login">Sign in</button>\n</form>\n'
        + (
            f'<p><a href="{escape(root)}/auth/register" id="register-link" target="_blank" rel="noopener noreferrer">'
            "No account yet? Create one</a></p>\n"
            if registration
            else ""
        )
        + f'<p><a href="{escape(root)}/auth/account" id="account-link" target="_blank" rel="noopener noreferrer">'
        "Change your password or set up two-step sign-in</a></p>"
    )
    return _page("Sign in", body)


def patient_picker(step: PatientStep, *, root: str) -> str:
    options = "".join(
        f'<label for="patient-{i}"><input type="radio" id="patient-{i}" name="patient" value="{escape(pid)}"'
        f"{' checked' if i == 0 else ''}> {escape(label)}</label>\n"
        for i, (pid, label) in enumerate(step.patients)
    )
    if not step.patients:
        options = "<p>No patients match.</p>\n"
    body = (
        f"<p>Choose the patient whose record <strong>{escape(step.client_name)}</strong> will open.</p>\n"
        + _error(step.error)
        + f'<form method="post" action="{escape(root)}/auth/patient" id="search-form" role="search">\n'
        + _handle(step.handle)
        + '<label for="patient-search">Find a patient by name or id</label>\n'
        f'<input type="text" id="patient-search" name="q" value="{escape(step.query)}">\n'
        '<button type="submit" id="search-patients">Search</button>\n</form>\n'
        f'<form method="post" action="{escape(root)}/auth/patient" id="patient-form">\n'
        + _handle(step.handle)
        + f"<fieldset>\n<legend>Patients</legend>\n{options}</fieldset>\n"
        '<button type="submit" id="select-patient" name="action" value="select">Continue</button>\n</form>'
    )
    return _page("Choose a patient", body)


def consent_page(step: ConsentStep, *, root: str) -> str:
    items = "".join(
        f'<label for="scope-{i}"><input type="checkbox" id="scope-{i}" name="scope" value="{escape(offer.scope)}" '
        f"checked> <span>{escape(offer.description)} <code>{escape(offer.scope)}</code></span></label>\n"
        for i, offer in enumerate(step.offers)
    )
    patient = (
        f'<p>Patient in context: <strong id="patient">{escape(step.patient)}</strong></p>\n'
        if step.patient
        else ""
    )
    body = (
        f"<p>Signed in as <strong>{escape(step.user)}</strong>. "
        f"<strong>{escape(step.client_name)}</strong> asks for the access below. "
        "Untick anything you do not want to allow.</p>\n"
        + patient
        + f'<form method="post" action="{escape(root)}/auth/consent" id="consent-form">\n'
        + _handle(step.handle)
        + f"<fieldset>\n<legend>Requested access</legend>\n{items}</fieldset>\n"
        '<button type="submit" id="approve" name="decision" value="approve">Allow</button>\n'
        '<button type="submit" id="deny" name="decision" value="deny">Deny</button>\n</form>'
    )
    return _page("Allow access?", body)


def error_page(step: ErrorStep) -> str:
    return _page("Cannot continue", _error(step.message))
