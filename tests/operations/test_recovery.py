"""Bulk recovery from the CLI: dead-letters --retry and recover, with a dry-run count and progress."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from sqlalchemy import select, text

from flask_async_events.models import DEAD_INDEX, Delivery
from flask_async_events.operations.replay import dead_filter
from flask_async_events.operations.status import dead_letters
from flask_async_events.state import get_state
from tests.conftest import AppEnv, Receiver, drain, run_burst
from tests.helpers import place_order, states, subscribe


@pytest.fixture
def dead(env: AppEnv, receiver: Receiver) -> tuple[Flask, Receiver, int, int]:
    """Three orders dead at an endpoint that was down (it answers 200 now) and one at another."""
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    outage = subscribe(app, receiver.respond("/outage", [500, 500, 500, 200]))
    other = subscribe(app, receiver.respond("/other", [500, 500, 500, 200]), event_name="sales.order.*")
    for _ in range(3):
        place_order(app)
    run_burst(app)
    assert states(app).count("dead") == 6
    return app, receiver, outage, other


def cli(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["async-events", *args])
    return result.exit_code, result.output


def test_recover_replays_one_subscriptions_dead_letters_since_a_time(dead: tuple[Flask, Receiver, int, int]) -> None:
    app, receiver, outage, _ = dead
    code, output = cli(app, "recover", "--subscription", str(outage), "--since", "1h", "--dry-run", "--json")
    assert code == 0 and json.loads(output) == {"count": 3, "uuids": [], "dry_run": True}
    code, output = cli(app, "recover", "--subscription", str(outage), "--since", "2999-01-01")
    assert code == 0 and "Replayed 0 dead delivery(ies)." in output
    code, output = cli(app, "recover", "--subscription", str(outage), "--since", "1h")
    assert code == 0 and "Replaying" in output and "Replayed 3 dead delivery(ies)." in output
    drain(app, lambda: states(app).count("delivered") == 3)
    assert len(receiver.at("/outage")) == 6 and states(app).count("dead") == 3  # the other's stay dead


def test_dead_letters_retry_replays_every_enabled_subscriptions(dead: tuple[Flask, Receiver, int, int]) -> None:
    app, _, _, other = dead
    assert cli(app, "disable", str(other))[0] == 0  # its dead letters stay dead, and are not retried
    code, output = cli(app, "dead-letters", "--retry", "--dry-run", "--json")
    assert code == 0 and json.loads(output)["count"] == 3  # a disabled subscription's are left alone
    code, output = cli(app, "dead-letters", "--retry", "--json")
    assert code == 0 and len(json.loads(output)["uuids"]) == 3
    drain(app, lambda: states(app).count("delivered") == 3)
    code, output = cli(app, "dead-letters", "--subscription", str(other), "--json")
    assert code == 0 and [row["subscription_id"] for row in json.loads(output)] == [other] * 3


def test_recover_refuses_a_disabled_subscription_and_a_bad_time(dead: tuple[Flask, Receiver, int, int]) -> None:
    app, _, outage, _ = dead
    code, output = cli(app, "recover", "--subscription", str(outage), "--since", "last tuesday")
    assert code == 2 and "Invalid value: --since: 'last tuesday' is not a time" in output
    cli(app, "disable", str(outage))
    code, output = cli(app, "recover", "--subscription", str(outage), "--since", "1h")
    assert code == 1 and f"subscription {outage} is disabled; enable it" in output
    code, output = cli(app, "recover", "--subscription", str(outage), "--since", "1h", "--missed")
    assert code == 1 and f"subscription {outage} is disabled; enable it" in output and "Replaying" not in output
    assert states(app).count("dead") == 6


def test_recover_names_a_subscription_that_does_not_exist(dead: tuple[Flask, Receiver, int, int]) -> None:
    app, *_ = dead
    code, output = cli(app, "recover", "--subscription", "999", "--since", "1h")
    assert code == 1 and "no subscription 999 (flask async-events subscriptions lists them)" in output
    assert "Replaying" not in output  # named before anything starts
    assert states(app).count("dead") == 6


def test_trace_shows_one_delivery_on_the_command_line(dead: tuple[Flask, Receiver, int, int]) -> None:
    app, _, outage, _ = dead
    uuid = json.loads(cli(app, "dead-letters", "--subscription", str(outage), "--json")[1])[0]["uuid"]
    code, output = cli(app, "trace", uuid, "--json")
    trace = json.loads(output)
    assert code == 0 and trace["status"] == "Dead Lettered" and trace["subscription_id"] == outage
    assert [attempt["status_code"] for attempt in trace["attempts"]] == [500]
    assert trace["payload"]["data"]["customer_email"] == "roni_cost@example.com"
    code, output = cli(app, "trace", uuid)
    assert code == 0 and output.startswith(f"Dead Lettered: sales.order.created to subscription {outage}")
    code, output = cli(app, "trace", "no-such-uuid")
    assert code == 1 and "no delivery with uuid no-such-uuid" in output


def test_the_dead_letters_come_newest_first_from_their_own_index(dead: tuple[Flask, Receiver, int, int]) -> None:
    """On PostgreSQL the list reads the dead letters' partial index in order instead of sorting
    every dead row; the other databases sort them."""
    app, *_ = dead
    with app.app_context():
        state = get_state()
        session = state.db.session
        newest_first = select(Delivery.uuid).where(*dead_filter(None, None))
        newest_first = newest_first.order_by(Delivery.updated_at.desc(), Delivery.id.desc()).limit(4)
        assert [row["uuid"] for row in dead_letters(state, limit=4)] == list(session.scalars(newest_first))
        if session.get_bind().dialect.name != "postgresql":
            return
        session.execute(text("SET LOCAL enable_seqscan = off"))
        compiled = newest_first.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        plan = " ".join(row[0] for row in session.execute(text(f"EXPLAIN {compiled}")))
        session.rollback()
    assert DEAD_INDEX in plan and "Sort" not in plan, plan
