"""A publisher in a process of its own, for the idempotency race: at a given moment it places an
order and publishes ``sales.order.created`` with an idempotency key, holds its transaction open a
while, commits, and prints the event's id and the order's.

    python -m tests.racer KEY START_AT HOLD_SECONDS
"""

from __future__ import annotations

import sys
import time

from tests.appfactory import Order, create_app, db, events


def main(key: str, start_at: float, hold: float) -> None:
    app = create_app()
    with app.app_context():
        db.session.execute(db.select(Order).limit(1))  # connected and warm before the start
        db.session.rollback()
        time.sleep(max(0.0, start_at - time.time()))
        order = Order(customer_email="racer@example.com", total="1.00")
        db.session.add(order)
        db.session.flush()
        event_id = events.publish("sales.order.created", id=order.id, idempotency_key=key)
        time.sleep(hold)
        db.session.commit()
        print(event_id, order.id)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))
