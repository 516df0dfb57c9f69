"""The fake SumUp answers what SumUp's official client (PyPI ``sumup`` 0.4.0) expects, so it cannot drift.

Two checks on every body: SumUp's own ``AsyncSumup`` client, pointed at the fake over real HTTP,
accepts it (status code and pydantic model, as for the real API), and every key the fake sends is
a field of that model (the models allow extra keys, so a misspelt or invented key would otherwise
pass), recursively into transactions and transaction events. Only ``Problem`` declares
additional properties (RFC 9457 extension members, e.g. SumUp's ``trace_id``).
"""

from __future__ import annotations

import types
import typing
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pydantic
import pytest
import sumup
from sumup import types as st
from sumup.checkouts.resource import ListCheckouts200Response

from tests.fakes.sumup import API_KEY, MERCHANT_CODE, FakeSumUp, serve

pytestmark = pytest.mark.anyio


def _models(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    found: list[type[pydantic.BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models(arg)
    return found


def assert_fits(model: type[pydantic.BaseModel], data: Any, where: str = "") -> None:
    """``data`` validates as ``model`` and holds no key the model does not declare (recursively)."""
    model.model_validate(data)
    assert isinstance(data, dict), f"{where or model.__name__}: not an object"
    # Only a model whose schema declares additional properties (Problem: RFC 9457 extension members
    # such as SumUp's trace_id) may carry keys it does not name.
    unknown = set() if model.model_config.get("extra") == "allow" else set(data) - set(model.model_fields)
    assert not unknown, f"{where or model.__name__}: keys {sorted(unknown)} are not in SumUp's {model.__name__}"
    for name, value in data.items():
        inner = _models(model.model_fields[name].annotation) if name in model.model_fields else []
        if not inner:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                assert_fits(inner[0], item, f"{where or model.__name__}.{name}")


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeSumUp, str]]:
    fake = FakeSumUp()
    async with serve(fake) as url:
        yield fake, url


async def test_checkout_lifecycle_matches_sumup_models(fake: tuple[FakeSumUp, str]) -> None:
    server, url = fake
    async with sumup.AsyncSumup(api_key=API_KEY, base_url=url) as client, httpx.AsyncClient(base_url=url) as raw:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        created = await client.checkouts.create(
            checkout_reference="RA-2026-000001",
            amount=10.1,
            currency="EUR",
            merchant_code=MERCHANT_CODE,
            description="Two loaves",
            return_url="http://127.0.0.1:9/hook",
            redirect_url="http://127.0.0.1:9/back",
            hosted_checkout={"enabled": True},
        )
        assert created.status == "PENDING" and created.amount == 10.1
        assert created.hosted_checkout_url == f"{url}/pay/{created.id}"
        assert created.id is not None
        body = (await raw.get(f"/v0.1/checkouts/{created.id}", headers=auth)).json()
        assert_fits(st.CheckoutSuccess, body)
        assert (await client.checkouts.get(created.id)).status == "PENDING"

        listed = await client.checkouts.list(checkout_reference="RA-2026-000001")
        assert [c.id for c in listed] == [created.id]
        raw_list = (
            await raw.get("/v0.1/checkouts", params={"checkout_reference": "RA-2026-000001"}, headers=auth)
        ).json()
        pydantic.TypeAdapter(ListCheckouts200Response).validate_python(raw_list)
        for item in raw_list:
            assert_fits(st.CheckoutSuccess, item)
        assert await client.checkouts.list(checkout_reference="nobody") == []

        updated = await client.checkouts.update(created.id, description="Three loaves")
        assert updated.description == "Three loaves"
        create_body = (
            await raw.post(
                "/v0.1/checkouts",
                headers=auth,
                json={
                    "checkout_reference": "RA-2026-000002",
                    "amount": 5,
                    "currency": "EUR",
                    "merchant_code": MERCHANT_CODE,
                },
            )
        ).json()
        assert_fits(st.Checkout, create_body)
        assert "hosted_checkout_url" not in create_body  # only when hosted checkout is enabled

        # Paid on the hosted page, then refunded in two parts.
        server.pay(created.id)
        paid = await client.checkouts.get(created.id)
        assert paid.status == "PAID" and paid.transactions and paid.transactions[0].status == "SUCCESSFUL"
        assert_fits(st.CheckoutSuccess, (await raw.get(f"/v0.1/checkouts/{created.id}", headers=auth)).json())
        txn_id = paid.transaction_id
        assert txn_id is not None and txn_id == paid.transactions[0].id
        assert await client.transactions.refund(MERCHANT_CODE, txn_id, amount=4.0) == {}
        txn = await client.transactions.get(MERCHANT_CODE, id=txn_id)
        assert txn.status == "SUCCESSFUL" and [e.amount for e in txn.transaction_events or []] == [4.0]
        assert_fits(
            st.TransactionFull,
            (
                await raw.get(f"/v2.1/merchants/{MERCHANT_CODE}/transactions", params={"id": txn_id}, headers=auth)
            ).json(),
        )
        assert await client.transactions.refund(MERCHANT_CODE, txn_id) == {}  # the rest
        txn = await client.transactions.get(MERCHANT_CODE, id=txn_id)
        assert txn.status == "REFUNDED" and [e.amount for e in txn.transaction_events or []] == [4.0, 6.1]

        # Deactivating: the unpaid one expires; the paid one is 409 CHECKOUT_PROCESSED.
        expired = await client.checkouts.deactivate(create_body["id"])
        assert expired.status == "EXPIRED"
        assert_fits(st.Checkout, expired.model_dump(mode="json", exclude_none=True))
        with pytest.raises(sumup.APIError) as conflict:
            await client.checkouts.deactivate(created.id)
        assert conflict.value.status == 409
        assert_fits(st.Error, conflict.value.response.json())
        assert conflict.value.response.json() == {
            "error_code": "CHECKOUT_PROCESSED",
            "message": "Checkout is already processed",
        }


async def test_errors_match_sumup_models(fake: tuple[FakeSumUp, str]) -> None:
    server, url = fake
    async with (
        sumup.AsyncSumup(api_key=API_KEY, base_url=url) as client,
        sumup.AsyncSumup(api_key="sup_sk_wrong", base_url=url) as stranger,
    ):
        await client.checkouts.create(checkout_reference="dup", amount=1.0, currency="EUR", merchant_code=MERCHANT_CODE)
        cases: list[tuple[Any, int, type[pydantic.BaseModel], dict[str, Any]]] = [
            (
                client.checkouts.create(
                    checkout_reference="dup", amount=1.0, currency="EUR", merchant_code=MERCHANT_CODE
                ),
                409,
                st.Error,
                {
                    "error_code": "DUPLICATED_CHECKOUT",
                    "message": "Checkout with this checkout reference and pay to email already exists",
                },
            ),
            (
                client.checkouts.create(checkout_reference="x", amount=1.0, currency="EUR", merchant_code=""),
                400,
                st.ErrorExtended,
                {"message": "Validation error", "error_code": "MISSING", "param": "merchant_code"},
            ),
            (
                client.checkouts.create(checkout_reference="x", amount=1.0, currency="EUR", merchant_code="OTHER"),
                403,
                st.ErrorForbidden,
                {"error_message": "checkout_payments_not_allowed", "error_code": "FORBIDDEN", "status_code": "403"},
            ),
            (
                client.checkouts.get("00000000-0000-0000-0000-000000000000"),
                404,
                st.Error,
                {"error_code": "NOT_FOUND", "message": "Resource not found"},
            ),
            (stranger.checkouts.get("anything"), 401, st.Problem, {}),
            (client.transactions.refund(MERCHANT_CODE, "no-such-transaction"), 404, st.Problem, {}),
        ]
        for call, status, model, expected in cases:
            with pytest.raises(sumup.APIError) as caught:
                await call
            assert caught.value.status == status, caught.value
            body = caught.value.response.json()
            assert_fits(model, body)
            assert all(body[k] == v for k, v in expected.items()), body
        problem = caught.value.response
        assert problem.headers["content-type"].startswith("application/problem+json")
    assert len(server.checkouts) == 1  # no error made a checkout


async def test_refund_bigger_than_paid_is_a_problem(fake: tuple[FakeSumUp, str]) -> None:
    server, url = fake
    async with sumup.AsyncSumup(api_key=API_KEY, base_url=url) as client:
        made = await client.checkouts.create(
            checkout_reference="r", amount=2.5, currency="EUR", merchant_code=MERCHANT_CODE
        )
        assert made.id is not None
        txn = server.transactions[server.pay(made.id)["transaction_id"]]
        with pytest.raises(sumup.APIError) as caught:
            await client.transactions.refund(MERCHANT_CODE, txn["id"], amount=2.51)
        assert caught.value.status == 400
        assert_fits(st.Problem, caught.value.response.json())
        assert txn["transaction_events"] == []


def test_models_checked_are_sumups() -> None:
    # The names this test relies on exist in the pinned package (a rename fails here, clearly).
    assert isinstance(st, types.ModuleType)
    for name in (
        "Checkout",
        "CheckoutSuccess",
        "TransactionFull",
        "Error",
        "ErrorExtended",
        "ErrorForbidden",
        "Problem",
    ):
        assert issubclass(getattr(st, name), pydantic.BaseModel), name
