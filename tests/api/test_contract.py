"""schemathesis over the whole served OpenAPI document, as an admin token and as an ordinary one,
with data the schema allows and data it does not: no 5xx, whatever is sent, and no response
outside the documented schema."""

from __future__ import annotations

import itertools

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err, Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth, negative_data_rejection, positive_data_acceptance

from flask_async_events.auth import create_token
from tests.appfactory import db
from tests.conftest import AppEnv

MAX_EXAMPLES = 25
# The generator cannot know which ids exist or which names are defined events: a 4xx for
# schema-valid input is the right answer there, so those two checks do not apply; auth is tested
# on its own in test_api.
EXCLUDED = [positive_data_acceptance, negative_data_rejection, ignored_auth]


@pytest.mark.parametrize("admin", [True, False], ids=["admin token", "owner token"])
def test_the_api_keeps_its_contract(env: AppEnv, admin: bool) -> None:
    app = env.app()
    with app.app_context():
        secret = create_token(db.session, "contract", resources=["sales"], admin=admin)
        db.session.commit()
    schema = schemathesis.openapi.from_wsgi("/rest/V1/openapi.json", app)
    results = list(schema.get_all_operations())
    invalid = [result.err() for result in results if isinstance(result, Err)]
    assert invalid == [], invalid  # the document itself must be valid
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) >= 11
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def keeps_contract(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {secret}"}, excluded_checks=EXCLUDED)

        keeps_contract()
