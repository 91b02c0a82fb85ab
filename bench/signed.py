"""A signed webhook POST as a plain Python program would send it: the baselines' unit of work."""

from __future__ import annotations

import time

import requests
import urllib3

from flask_async_events.signing import legacy_signature, signing_key, standard_signature

SECRET = "whsec_YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA=="
BODY = b'{"data":{"id":1,"padding":"' + b"x" * 1000 + b'"}}'
KEY = signing_key(SECRET)


def signed_headers(msg_id: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers and the Magento module's hex signature, as every sender here sends them."""
    stamp = int(time.time())
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": standard_signature([KEY], msg_id, stamp, body),
        "x-magento-signature": legacy_signature(KEY, body),
    }


class RequestsPoster:
    """Signs and POSTs over one kept-alive requests session."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def post(self, url: str, msg_id: str, body: bytes = BODY) -> None:
        response = self.session.post(url, data=body, headers=signed_headers(msg_id, body), timeout=(5, 15))
        response.raise_for_status()


class Urllib3Poster:
    """Signs and POSTs over urllib3's pool directly (what the ``http`` notifier uses)."""

    def __init__(self) -> None:
        self.http = urllib3.PoolManager()

    def post(self, url: str, msg_id: str, body: bytes = BODY) -> None:
        response = self.http.request(
            "POST", url, body=body, headers=signed_headers(msg_id, body), timeout=urllib3.Timeout(5, 15), retries=False
        )
        if response.status >= 400:
            raise RuntimeError(f"receiver answered {response.status}")


POSTERS: dict[str, type[RequestsPoster | Urllib3Poster]] = {"requests": RequestsPoster, "urllib3": Urllib3Poster}
