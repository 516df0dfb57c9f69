"""A fake SumUp Online Payments API with a hosted checkout page (design/domains.md §5).

It speaks SumUp's bodies and status codes (checked against the official ``sumup`` package's models
by tests/fakes/test_sumup_contract.py, so it cannot drift):

- ``POST /v0.1/checkouts`` → 201 checkout (``hosted_checkout_url`` when ``hosted_checkout.enabled``);
  400 ``{"message": "Validation error", "error_code": "MISSING", "param": ...}``; 401 problem+json;
  403 ``{"error_message": "checkout_payments_not_allowed", "error_code": "FORBIDDEN", "status_code": "403"}``;
  409 ``DUPLICATED_CHECKOUT`` for a reference already used.
- ``GET /v0.1/checkouts/{id}`` (404 ``NOT_FOUND``), ``GET /v0.1/checkouts?checkout_reference=`` (an array),
  ``PATCH /v0.1/checkouts/{id}``, ``DELETE /v0.1/checkouts/{id}`` (``EXPIRED``; 409 ``CHECKOUT_PROCESSED``).
- ``POST /v1.0/merchants/{code}/payments/{transaction id}/refunds`` (``{"amount": 5.0}`` optional) → 201 ``{}``;
  ``GET /v2.1/merchants/{code}/transactions?id=`` → the transaction with its ``transaction_events``.
- ``GET /pay/{id}``: the hosted page, plain HTML forms (no JavaScript): **Pay** and **Fail** set the
  status, POST the webhook ``{"event_type": "CHECKOUT_STATUS_CHANGED", "id"}`` to the checkout's
  ``return_url`` (or the dashboard envelope, ``envelope="dashboard"``), then 303 to ``redirect_url``;
  **Abandon** changes nothing and sends nothing (a payer who closed the tab), then 303 back.

Tests drive it over real HTTP on 127.0.0.1 (:func:`serve`), or in process with
:meth:`FakeSumUp.asgi_client`, and inject faults: ``fail_next(op,
status=500, commit=True)`` answers an error after (``commit``) or instead of doing the operation,
``hang_next(op)`` never answers (until :meth:`FakeSumUp.release`), so a client's timeout fires.

Run it by hand to click through a payment locally::

    python -m tests.fakes.sumup --port 8111
    ROSE_ASH_SUMUP_API_URL=http://127.0.0.1:8111 ROSE_ASH_SUMUP_API_KEY=sup_sk_fake \\
        ROSE_ASH_SUMUP_MERCHANT_CODE=MFAKE01 make run
"""

from __future__ import annotations

import argparse
import asyncio
import html
import itertools
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, Response, delete, get, patch, post
from litestar.enums import RequestEncodingType
from litestar.params import Body

__all__ = ["FakeSumUp", "Fault", "main", "serve"]

API_KEY = "sup_sk_fake"
MERCHANT_CODE = "MFAKE01"
EXPONENTS = {"JPY": 0, "KRW": 0, "CLP": 0, "HUF": 2, "BHD": 3, "KWD": 3}
DeliverWebhook = Callable[[str, bytes], Awaitable[int]]


@dataclass
class Fault:
    op: str  # create, get, list, patch, delete, refund, transaction
    status: int = 500
    commit: bool = True  # do the operation, then fail to answer it (a lost response)
    hang: bool = False  # never answer until FakeSumUp.release()


@dataclass
class FakeSumUp:
    api_key: str = API_KEY
    merchant_code: str = MERCHANT_CODE
    public_url: str = "http://127.0.0.1:8111"
    envelope: str = "checkout"  # or "dashboard": the envelope of the webhooks the hosted page sends
    deliver: DeliverWebhook | None = None  # how webhooks are posted (default: httpx to return_url)
    checkouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (op, id or reference), answered or not
    on_call: Callable[[str, str], object] | None = None
    webhooks: list[tuple[str, dict[str, Any], int | None]] = field(default_factory=list)
    _released: asyncio.Event | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # Faults ----------------------------------------------------------------------------------

    def record(self, op: str, key: str) -> None:
        """Note a call, then let ``on_call`` change the world under it (a payer paying meanwhile)."""
        self.calls.append((op, key))
        if self.on_call is not None:
            self.on_call(op, key)

    def fail_next(self, op: str, *, status: int = 500, commit: bool = True) -> None:
        self.faults.append(Fault(op, status=status, commit=commit))

    def hang_next(self, op: str, *, commit: bool = True) -> None:
        self.faults.append(Fault(op, commit=commit, hang=True))

    def release(self) -> None:
        """Let every hung request finish (with a 500 nobody reads any more)."""
        if self._released is not None:
            self._released.set()

    def _fault(self, op: str) -> Fault | None:
        for fault in self.faults:
            if fault.op == op:
                self.faults.remove(fault)
                return fault
        return None

    async def _answer(self, fault: Fault | None, answer: Callable[[], Response[Any]]) -> Response[Any]:
        """Apply ``fault`` around ``answer`` (which does the operation)."""
        if fault is None:
            return answer()
        if fault.commit:
            answer()
        if fault.hang:
            if self._released is None:
                self._released = asyncio.Event()
            await self._released.wait()
        return problem(fault.status, "Internal Server Error", "The fake was told to fail this request.")

    # The hosted page's actions ---------------------------------------------------------------

    def pay(self, checkout_id: str) -> dict[str, Any]:
        checkout = self.checkouts[checkout_id]
        if checkout["status"] != "PENDING":
            return checkout
        txn = self._transaction(checkout, "SUCCESSFUL")
        checkout.update(status="PAID", transaction_code=txn["transaction_code"], transaction_id=txn["id"])
        return checkout

    def fail(self, checkout_id: str) -> dict[str, Any]:
        checkout = self.checkouts[checkout_id]
        if checkout["status"] == "PENDING":
            self._transaction(checkout, "FAILED")
            checkout["status"] = "FAILED"
        return checkout

    def _transaction(self, checkout: dict[str, Any], status: str) -> dict[str, Any]:
        number = next(self._ids)
        txn = {
            "id": str(uuid.uuid4()),
            "transaction_code": f"TFAKE{number:06d}",
            "amount": checkout["amount"],
            "currency": checkout["currency"],
            "timestamp": now(),
            "status": status,
            "payment_type": "ECOM",
            "entry_mode": "CUSTOMER_ENTRY",
            "installments_count": 1,
            "auth_code": f"{number:06d}" if status == "SUCCESSFUL" else None,
            "merchant_code": self.merchant_code,
        }
        txn = {k: v for k, v in txn.items() if v is not None}
        checkout["transactions"].append(txn)
        self.transactions[txn["id"]] = {**txn, "transaction_events": [], "simple_status": status}
        return txn

    async def send_webhook(self, checkout: dict[str, Any]) -> int | None:
        url = checkout.get("return_url")
        if not url:
            return None
        if self.envelope == "dashboard":
            body = {
                "id": str(uuid.uuid4()),
                "event_type": "checkout.status.updated",
                "payload": {
                    "checkout_id": checkout["id"],
                    "reference": checkout["checkout_reference"],
                    "status": checkout["status"],
                },
                "timestamp": now(),
            }
        else:
            body = {"event_type": "CHECKOUT_STATUS_CHANGED", "id": checkout["id"]}
        raw = msgspec.json.encode(body)
        status: int | None
        try:
            if self.deliver is not None:
                status = await self.deliver(url, raw)
            else:
                async with httpx.AsyncClient(timeout=10) as client:
                    response = await client.post(url, content=raw, headers={"Content-Type": "application/json"})
                    status = response.status_code
        except httpx.HTTPError:
            status = None  # SumUp would retry after 1 min, 5 min, 20 min and 2 h; tests resend by hand
        self.webhooks.append((url, body, status))
        return status

    # The app ---------------------------------------------------------------------------------

    @property
    def app(self) -> Litestar:
        return build_app(self)

    def asgi_client(self) -> httpx.AsyncClient:
        """A client that reaches the fake in process (``httpx.ASGITransport``, no port), for
        ``SumUpProvider(http=...)`` or ``available_providers(settings, http=...)``; the hosted page's
        links still name ``public_url``."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=self.public_url)

    def authorised(self, request: Request[Any, Any, Any]) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def problem(status: int, title: str, detail: str) -> Response[Any]:
    body = {
        "type": f"https://developer.sumup.com/problem/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "trace_id": uuid.uuid4().hex,
    }
    return Response(body, status_code=status, media_type="application/problem+json")


def error(status: int, code: str, message: str) -> Response[Any]:
    return Response({"error_code": code, "message": message}, status_code=status)


NOT_FOUND = ("NOT_FOUND", "Resource not found")
CREATE_FIELDS = ("checkout_reference", "amount", "currency", "merchant_code")
CREATED_KEYS = (
    "id",
    "checkout_reference",
    "amount",
    "currency",
    "merchant_code",
    "description",
    "return_url",
    "status",
    "date",
    "valid_until",
    "customer_id",
    "transactions",
    "hosted_checkout_url",
)


def created_view(checkout: dict[str, Any]) -> dict[str, Any]:
    """The body of a create, update or deactivate: the ``Checkout`` model's fields."""
    return {k: checkout[k] for k in CREATED_KEYS if checkout.get(k) is not None}


def full_view(checkout: dict[str, Any]) -> dict[str, Any]:
    """The body of a retrieve or list entry: ``CheckoutSuccess`` (plus transaction id, code, merchant name)."""
    view = created_view(checkout)
    view["merchant_name"] = "Fake Coop"
    for key in ("redirect_url", "transaction_code", "transaction_id"):
        if checkout.get(key) is not None:
            view[key] = checkout[key]
    return view


def minor(amount: Any, currency: str) -> int:
    return int(Decimal(str(amount)).scaleb(EXPONENTS.get(currency, 2)))


def major(amount_minor: int, currency: str) -> float:
    return float(Decimal(amount_minor).scaleb(-EXPONENTS.get(currency, 2)))


def build_app(fake: FakeSumUp) -> Litestar:
    def unauthorised() -> Response[Any]:
        return problem(401, "Unauthorized", "The request is not authorized.")

    @post("/v0.1/checkouts", status_code=201)
    async def create_checkout(request: Request[Any, Any, Any]) -> Response[Any]:
        if not fake.authorised(request):
            return unauthorised()
        try:
            body = msgspec.json.decode(await request.body())
        except msgspec.DecodeError:
            return Response({"message": "Validation error", "error_code": "INVALID", "param": "body"}, status_code=400)
        if not isinstance(body, dict):
            return Response({"message": "Validation error", "error_code": "INVALID", "param": "body"}, status_code=400)
        for name in CREATE_FIELDS:
            if body.get(name) in (None, ""):
                return Response(
                    {"message": "Validation error", "error_code": "MISSING", "param": name}, status_code=400
                )
        if not isinstance(body["amount"], int | float) or body["amount"] <= 0:
            return Response(
                {"message": "Validation error", "error_code": "INVALID", "param": "amount"}, status_code=400
            )
        if len(str(body["checkout_reference"])) > 90:
            return Response(
                {"message": "Validation error", "error_code": "INVALID", "param": "checkout_reference"}, status_code=400
            )
        if body["merchant_code"] != fake.merchant_code:
            return Response(
                {"error_message": "checkout_payments_not_allowed", "error_code": "FORBIDDEN", "status_code": "403"},
                status_code=403,
            )
        reference = str(body["checkout_reference"])
        fake.record("create", reference)
        if any(c["checkout_reference"] == reference for c in fake.checkouts.values()):
            return error(
                409,
                "DUPLICATED_CHECKOUT",
                "Checkout with this checkout reference and pay to email already exists",
            )
        checkout_id = str(uuid.uuid4())
        hosted = isinstance(body.get("hosted_checkout"), dict) and body["hosted_checkout"].get("enabled") is True
        stored: dict[str, Any] = {
            "id": checkout_id,
            "checkout_reference": reference,
            "amount": float(body["amount"]),
            "currency": str(body["currency"]),
            "merchant_code": fake.merchant_code,
            "description": body.get("description"),
            "return_url": body.get("return_url"),
            "redirect_url": body.get("redirect_url"),
            "customer_id": body.get("customer_id"),
            "status": "PENDING",
            "date": now(),
            "valid_until": body.get("valid_until") or (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "transactions": [],
            "hosted_checkout_url": f"{fake.public_url}/pay/{checkout_id}" if hosted else None,
        }

        def answer() -> Response[Any]:
            fake.checkouts[checkout_id] = stored
            return Response(created_view(stored), status_code=201)

        return await fake._answer(fake._fault("create"), answer)

    @get("/v0.1/checkouts")
    async def list_checkouts(request: Request[Any, Any, Any]) -> Response[Any]:
        if not fake.authorised(request):
            return unauthorised()
        reference = request.query_params.get("checkout_reference")
        fake.record("list", reference or "")

        def answer() -> Response[Any]:
            found = [
                full_view(c)
                for c in fake.checkouts.values()
                if reference is None or c["checkout_reference"] == reference
            ]
            return Response(found, status_code=200)

        return await fake._answer(fake._fault("list"), answer)

    @get("/v0.1/checkouts/{checkout_id:str}")
    async def get_checkout(request: Request[Any, Any, Any], checkout_id: str) -> Response[Any]:
        if not fake.authorised(request):
            return unauthorised()
        fake.record("get", checkout_id)
        if checkout_id not in fake.checkouts:
            return error(404, *NOT_FOUND)
        return await fake._answer(fake._fault("get"), lambda: Response(full_view(fake.checkouts[checkout_id])))

    @patch("/v0.1/checkouts/{checkout_id:str}")
    async def update_checkout(request: Request[Any, Any, Any], checkout_id: str) -> Response[Any]:
        if not fake.authorised(request):
            return unauthorised()
        fake.record("patch", checkout_id)
        checkout = fake.checkouts.get(checkout_id)
        if checkout is None:
            return error(404, *NOT_FOUND)
        if checkout["status"] != "PENDING":
            return error(409, "CHECKOUT_PROCESSED", "Checkout is already processed")
        body = msgspec.json.decode(await request.body() or b"{}")
        allowed = ("amount", "currency", "description", "checkout_reference", "valid_until", "customer_id")

        def answer() -> Response[Any]:
            checkout.update({k: body[k] for k in allowed if isinstance(body, dict) and k in body})
            return Response(created_view(checkout), status_code=200)

        return await fake._answer(fake._fault("patch"), answer)

    @delete("/v0.1/checkouts/{checkout_id:str}", status_code=200)
    async def deactivate_checkout(request: Request[Any, Any, Any], checkout_id: str) -> Response[Any]:
        if not fake.authorised(request):
            return unauthorised()
        fake.record("delete", checkout_id)
        checkout = fake.checkouts.get(checkout_id)
        if checkout is None:
            return error(404, *NOT_FOUND)
        if checkout["status"] in ("PAID", "FAILED"):
            return error(409, "CHECKOUT_PROCESSED", "Checkout is already processed")

        def answer() -> Response[Any]:
            checkout["status"] = "EXPIRED"
            return Response(created_view(checkout), status_code=200)

        return await fake._answer(fake._fault("delete"), answer)

    @post("/v1.0/merchants/{merchant_code:str}/payments/{transaction_id:str}/refunds", status_code=201)
    async def refund(request: Request[Any, Any, Any], merchant_code: str, transaction_id: str) -> Response[Any]:
        if not fake.authorised(request):
            return unauthorised()
        fake.record("refund", transaction_id)
        txn = fake.transactions.get(transaction_id)
        if merchant_code != fake.merchant_code or txn is None:
            return problem(404, "Not Found", "The transaction does not exist.")
        raw = await request.body()
        body = msgspec.json.decode(raw) if raw.strip() else {}
        currency = txn["currency"]
        refunded = sum(minor(e["amount"], currency) for e in txn["transaction_events"])
        paid = minor(txn["amount"], currency)
        if txn["status"] not in ("SUCCESSFUL",):
            return problem(409, "Conflict", "The transaction cannot be refunded in its current state.")
        wanted = paid - refunded if not isinstance(body, dict) or "amount" not in body else None
        if wanted is None:
            amount = body["amount"]
            if not isinstance(amount, int | float) or amount <= 0:
                return problem(400, "Bad Request", "The refund amount must be greater than zero.")
            wanted = minor(amount, currency)
        if wanted > paid - refunded:
            return problem(400, "Bad Request", "The refund amount exceeds the amount eligible for a refund.")

        def answer() -> Response[Any]:
            txn["transaction_events"].append(
                {
                    "id": next(fake._ids),
                    "event_type": "REFUND",
                    "status": "SUCCESSFUL",
                    "amount": major(wanted, currency),
                    "timestamp": now(),
                    "date": datetime.now(UTC).date().isoformat(),
                }
            )
            if refunded + wanted >= paid:
                txn["status"] = txn["simple_status"] = "REFUNDED"
                for checkout in fake.checkouts.values():
                    for t in checkout["transactions"]:
                        if t["id"] == transaction_id:
                            t["status"] = "REFUNDED"
            return Response({}, status_code=201)

        return await fake._answer(fake._fault("refund"), answer)

    @get("/v2.1/merchants/{merchant_code:str}/transactions")
    async def get_transaction(request: Request[Any, Any, Any], merchant_code: str) -> Response[Any]:
        if not fake.authorised(request):
            return unauthorised()
        transaction_id = request.query_params.get("id", "")
        fake.record("transaction", transaction_id)
        txn = fake.transactions.get(transaction_id)
        if merchant_code != fake.merchant_code or txn is None:
            return error(404, *NOT_FOUND)
        return await fake._answer(fake._fault("transaction"), lambda: Response(txn, status_code=200))

    @get("/pay/{checkout_id:str}", media_type="text/html")
    async def hosted_page(checkout_id: str) -> Response[str]:
        checkout = fake.checkouts.get(checkout_id)
        if checkout is None:
            return Response("<!doctype html><title>Not found</title><p>No such checkout.", status_code=404)
        amount = f"{checkout['amount']:.2f} {html.escape(checkout['currency'])}"
        state = html.escape(checkout["status"])
        buttons = "".join(
            f'<button name="action" value="{value}">{label}</button> '
            for value, label in (("pay", "Pay"), ("fail", "Fail"), ("abandon", "Abandon"))
        )
        page = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>Pay with SumUp (fake)</title>"
            f"<h1>Pay {amount}</h1><p>{html.escape(checkout.get('description') or '')}</p>"
            f"<p>Reference <code>{html.escape(checkout['checkout_reference'])}</code>, "
            f"status <b id=status>{state}</b></p>"
            f'<form method=post action="/pay/{html.escape(checkout_id)}">{buttons}</form>'
        )
        return Response(page, media_type="text/html")

    @post("/pay/{checkout_id:str}", status_code=303)
    async def hosted_action(
        checkout_id: str, data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED)
    ) -> Response[Any]:
        checkout = fake.checkouts.get(checkout_id)
        if checkout is None:
            return Response("No such checkout.", status_code=404, media_type="text/plain")
        action = data.get("action")
        before = checkout["status"]
        if action == "pay":
            fake.pay(checkout_id)
        elif action == "fail":
            fake.fail(checkout_id)
        elif action != "abandon":
            return Response("Unknown action.", status_code=400, media_type="text/plain")
        if checkout["status"] != before:
            await fake.send_webhook(checkout)
        target = checkout.get("redirect_url") or f"/pay/{checkout_id}"
        return Response(b"", status_code=303, headers={"Location": target})

    return Litestar(
        route_handlers=[
            create_checkout,
            list_checkouts,
            get_checkout,
            update_checkout,
            deactivate_checkout,
            refund,
            get_transaction,
            hosted_page,
            hosted_action,
        ],
        openapi_config=None,
    )


@asynccontextmanager
async def serve(fake: FakeSumUp) -> AsyncIterator[str]:
    """Serve ``fake`` on a free 127.0.0.1 port for the duration; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    fake.public_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(fake.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield fake.public_url
    finally:
        fake.release()
        server.should_exit = True
        await task
        sock.close()


@contextmanager
def serve_in_thread() -> Iterator[FakeSumUp]:
    """A fake on a thread and event loop of its own, over real HTTP on 127.0.0.1: the app under
    test (in a test client's portal, or a server process) calls it while the test's loop waits."""
    fake = FakeSumUp()
    started, stop = threading.Event(), threading.Event()

    async def run() -> None:
        async with serve(fake):
            started.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(30), "the SumUp fake did not start"
    try:
        yield fake
    finally:
        stop.set()
        thread.join(30)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="A fake SumUp API with a hosted checkout page, on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8111)
    parser.add_argument("--api-key", default=API_KEY)
    parser.add_argument("--merchant-code", default=MERCHANT_CODE)
    parser.add_argument("--envelope", choices=("checkout", "dashboard"), default="checkout")
    args = parser.parse_args(argv)
    fake = FakeSumUp(
        api_key=args.api_key,
        merchant_code=args.merchant_code,
        public_url=f"http://127.0.0.1:{args.port}",
        envelope=args.envelope,
    )
    print(f"fake SumUp on {fake.public_url} (key {fake.api_key}, merchant {fake.merchant_code})")
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
