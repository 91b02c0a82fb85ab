"""Settings the demo's processes share. Development values only."""

import os
from pathlib import Path

WEB_PORT = int(os.environ.get("PORT", "5000"))
RECEIVER_PORT = int(os.environ.get("DEMO_RECEIVER_PORT", "5001"))
RECEIVER_URL = f"http://127.0.0.1:{RECEIVER_PORT}/webhooks"
# The verification token of the demo subscription (a Standard Webhooks `whsec_` secret).
DEMO_SECRET = os.environ.get("DEMO_SECRET", "whsec_ZGVtby1zZWNyZXQtZm9yLWxvY2FsLXVzZS1vbmx5")
SECRET_KEY = os.environ.get("SECRET_KEY", "demo-only-secret-key")
# Where the demo keeps its SQLite database and embedded Redis (the repository's instance/ folder).
INSTANCE_PATH = os.environ.get("DEMO_INSTANCE_PATH") or str(Path(__file__).resolve().parent.parent / "instance")
