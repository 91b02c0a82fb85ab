"""Blinker signals a host app can connect to. Each is sent with the app as sender, after what it
reports is committed. ``delivery_uuid`` is the delivery's ``webhook-id``.

- ``event_published(app, event_id, event_name, store_id)``: a ``publish()`` call wrote an event.
- ``delivery_succeeded(app, delivery_uuid, event_name, subscription_id, status_code)``
- ``delivery_failed(app, delivery_uuid, event_name, subscription_id, status_code, will_retry)``
- ``delivery_dead_lettered(app, delivery_uuid, event_name, subscription_id, reason)``
- ``subscription_disabled(app, subscription_id, reason)``
"""

from blinker import Namespace

_signals = Namespace()

event_published = _signals.signal("event-published")
delivery_succeeded = _signals.signal("delivery-succeeded")
delivery_failed = _signals.signal("delivery-failed")
delivery_dead_lettered = _signals.signal("delivery-dead-lettered")
subscription_disabled = _signals.signal("subscription-disabled")
