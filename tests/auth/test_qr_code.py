"""The TOTP key URI drawn as an inline SVG QR code (fhir_server/auth/qr_code.py)."""

from __future__ import annotations

from fhir_server.auth import qr_code, totp

URI = totp.provisioning_uri("JBSWY3DPEHPK3PXP", "anna", "fhir-server")


def test_the_qr_code_is_one_svg_element_that_can_be_put_inline() -> None:
    drawn = qr_code.svg(URI)
    assert drawn.startswith("<svg ") and drawn.endswith("</svg>")
    assert 'xmlns="http://www.w3.org/2000/svg"' in drawn and "<path " in drawn
    assert "<?xml" not in drawn and "<script" not in drawn and "<image" not in drawn


def test_the_symbol_depends_on_the_text_and_only_on_it() -> None:
    assert qr_code.svg(URI) == qr_code.svg(URI)
    other = totp.provisioning_uri("JBSWY3DPEHPK3PXQ", "anna", "fhir-server")
    assert qr_code.svg(other) != qr_code.svg(URI)
