import datetime
from decimal import Decimal

import pytest

from connectors.erp.errors import PermanentErpError, RetryableErpError
from connectors.erp.tryton_rpc import _classify, dumps, loads
from erpbridge.config import Settings
from erpbridge.failures import RetryPolicy


def test_tryton_types_round_trip() -> None:
    payload = {
        "d": datetime.date(2026, 11, 3),
        "m": Decimal("1280.50"),
        "t": datetime.datetime(2026, 11, 3, 8, 30, 5),
    }
    assert loads(dumps(payload)) == payload
    assert b'"__class__": "Decimal", "decimal": "1280.50"' in dumps(payload)


def test_tryton_errors_are_classified() -> None:
    refused = _classify(
        "model.account.invoice.post", ["UserError", ["you must create a period", "", ""]]
    )
    assert isinstance(refused, PermanentErpError)
    assert "you must create a period" in str(refused)
    assert isinstance(_classify("x", ["ConcurrencyException", ["locked"]]), RetryableErpError)


def test_full_jitter_stays_under_the_cap() -> None:
    policy = RetryPolicy(initial_s=0.5, max_s=4.0)
    delays = [policy.delay(attempt) for attempt in range(1, 12) for _ in range(20)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert max(policy.delay(1) for _ in range(200)) <= 0.5


def test_settings_are_validated_at_start_up() -> None:
    with pytest.raises(ValueError, match="host:port"):
        Settings(kafka_bootstrap="localhost")
    with pytest.raises(ValueError):
        Settings(topic_prefix="bad prefix")
    with pytest.raises(ValueError):
        Settings(company_currency="rmb")
    with pytest.raises(ValueError):
        Settings(schema_compatibility="SIDEWAYS")
    settings = Settings(posting_category_accounts={" Travel ": "5.1.3"})
    assert settings.posting_category_accounts == {"travel": "5.1.3"}


def test_a_login_tryton_could_not_complete_is_retried_not_refused() -> None:
    """Tryton answers 404 to a login when SQLite says "database is locked" (seen in a CI run of
    the repeated-kill test): that passes, so it is retryable; any other call's 404 stays
    permanent."""
    import httpx

    from connectors.erp.tryton_rpc import TrytonRpc

    rpc = TrytonRpc("http://tryton.test", "db", "admin", "admin")
    rpc._http = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(404)))
    with pytest.raises(RetryableErpError, match="could not open the database"):
        rpc.login()
    rpc._auth = "Session x"
    with pytest.raises(PermanentErpError):
        rpc.call("model.account.invoice.read", [1])
    rpc.close()


def test_a_party_another_sink_created_meanwhile_is_used_not_refused() -> None:
    """Two sink processes book the first claims of a new employee at once: both find no party,
    one creates it and the other's create is refused (the code is unique). That one must use the
    party now there, not send its posting to the dead-letter topic (the fault suite's case)."""
    from types import SimpleNamespace

    from connectors.erp.tryton import TrytonWriter

    class RacingRpc:
        def __init__(self) -> None:
            self.searches = 0

        def call(self, method: str, *args: object) -> object:
            if method == "model.party.party.search_read":
                self.searches += 1
                return [] if self.searches == 1 else [{"id": 7, "addresses": [70]}]
            if method == "model.party.party.create":
                raise PermanentErpError("Tryton UserError on model.party.party.create: The code "
                                        "on party must be unique.")  # fmt: skip
            raise AssertionError(method)

    writer = TrytonWriter(RacingRpc(), "2.1.4")  # type: ignore[arg-type]
    employee = SimpleNamespace(employee_id="E1001", employee_name="张伟")
    assert writer._employee_party(employee) == (7, 70)  # type: ignore[arg-type]
