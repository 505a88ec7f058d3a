"""The TOTP key URI as a QR code (https://github.com/google/google-authenticator/wiki/Key-Uri-Format), drawn as inline SVG.

Authenticator apps enrol by scanning the `otpauth://` URI (`totp.provisioning_uri`). The symbol is
one SVG path (the `qrcode` package's path image), so the page needs no image library and no image
request: the Content-Security-Policy of the login pages (`default-src 'none'`) stays as it is.
"""

from __future__ import annotations

import qrcode
import qrcode.constants
from qrcode.image.svg import SvgPathImage


def svg(text: str) -> str:
    """An `<svg>` element (no XML declaration) whose QR code encodes `text`; the same text gives the same SVG."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(text)
    code.make(fit=True)
    image = code.make_image(image_factory=SvgPathImage)
    drawn: str = image.to_string(encoding="unicode")
    return drawn
