"""The sign-in settings of the test mesh: the fake Google's and Apple's key sets, the client ids the apps would
present, and the fake SendGrid that receives the claim links."""

from __future__ import annotations

from fakes.identity_providers import FakeIdentityProvider
from fakes.sendgrid import FakeSendGrid

DRIVER_GOOGLE_CLIENT_ID = "driver-app.apps.googleusercontent.test"
MERCHANT_GOOGLE_CLIENT_ID = "merchant-portal.apps.googleusercontent.test"
APPLE_CLIENT_ID = "network.nerava.driver.test"
MERCHANT_PORTAL_URL = "http://portal.test"


def sign_in_env(google: FakeIdentityProvider, apple: FakeIdentityProvider, sendgrid: FakeSendGrid) -> dict[str, str]:
    return {
        "GOOGLE_JWKS_URL": google.jwks_url,
        "GOOGLE_CLIENT_IDS": DRIVER_GOOGLE_CLIENT_ID,
        "MERCHANT_GOOGLE_CLIENT_IDS": MERCHANT_GOOGLE_CLIENT_ID,
        "APPLE_JWKS_URL": apple.jwks_url,
        "APPLE_CLIENT_IDS": APPLE_CLIENT_ID,
        "SENDGRID_API_BASE": sendgrid.base_url,
        "SENDGRID_API_KEY": sendgrid.api_key,
        "MERCHANT_PORTAL_URL": MERCHANT_PORTAL_URL,
    }
