"""A brand EC site's integration, written against the client that openapi-python-client
generates from zaiko's /openapi.json alone (tests/clients/run.sh generates it, checks
this file with `mypy --strict` and runs it against a live server).

It does what a brand's site does: sets up its catalog and stock, reserves at checkout,
ships through to `shipped`, follows the change feed by cursor with typed event data,
receives a signed webhook, uploads a stock import, searches with `min_lsn` to read its
own write, and handles a typed 409 problem.

    ZAIKO_URL=http://127.0.0.1:8080 ZAIKO_ADMIN_TOKEN=... python brand_ec.py
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, MutableMapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from zaiko_client import AuthenticatedClient
from zaiko_client.api.admin import create_brand, create_brand_token, put_location
from zaiko_client.api.catalog import put_sku
from zaiko_client.api.feed import list_events
from zaiko_client.api.imports import create_import, get_import
from zaiko_client.api.reservations import create_reservation
from zaiko_client.api.search import search_skus
from zaiko_client.api.shipments import create_shipment, set_shipment_status
from zaiko_client.api.stock import change_stock, get_stock
from zaiko_client.api.webhooks import create_webhook
from zaiko_client.models import (
    AdjustStockChange,
    CreateBrand,
    ErrorCode,
    EventPage,
    FeedEventType,
    ImportKind,
    ImportStatus,
    LineInput,
    LocationInput,
    LocationKind,
    Problem,
    ReservationInput,
    ReservationStatus,
    SetStockChange,
    ShipmentFromReservation,
    ShipmentStatus,
    ShipmentStatusChangedEvent,
    ShipmentStatusInput,
    ShipmentStatusInputStatus,
    ShipTo,
    SkuInput,
    SkuUpsertedEvent,
    StockChangedEvent,
    StockChangesInput,
    TokenCreated,
    WebhookInput,
)
from zaiko_client.types import File

DEADLINE_S = 30.0


class Failed(Exception):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise Failed(what)


def lsn_of(headers: MutableMapping[str, str]) -> int:
    """The journal position of a durable write: `X-Zaiko-Lsn`."""
    raw = headers.get("x-zaiko-lsn")
    check(raw is not None, "no X-Zaiko-Lsn on a write")
    return int(str(raw))


def setup(base: str, admin_token: str, brand: str) -> AuthenticatedClient:
    """What the platform's admin does once: the brand, a location, a brand token."""
    admin = AuthenticatedClient(base_url=base, token=admin_token, raise_on_unexpected_status=True)
    created = create_brand.sync(client=admin, body=CreateBrand(id=brand, name="ブランドA"))
    check(not isinstance(created, Problem) and created is not None, f"create brand: {created}")
    location = put_location.sync("tsukuba", client=admin, body=LocationInput(name="つくば", kind=LocationKind.WAREHOUSE))
    check(not isinstance(location, Problem) and location is not None, f"put location: {location}")
    # The body is optional: no body at all.
    token = create_brand_token.sync(brand, client=admin)
    check(isinstance(token, TokenCreated), f"brand token: {token}")
    assert isinstance(token, TokenCreated)
    return AuthenticatedClient(base_url=base, token=token.token, raise_on_unexpected_status=True)


def catalog_and_stock(client: AuthenticatedClient, brand: str) -> int:
    """Two SKUs with stock; returns the LSN of the stock write."""
    for sku, name, price in [("TS-NAVY-M", "オーバーサイズ Tシャツ ネイビー M", 3990), ("TS-NAVY-L", "オーバーサイズ Tシャツ ネイビー L", 3990)]:
        saved = put_sku.sync_detailed(brand, sku, client=client, body=SkuInput(name=name, price=price, color="navy", tags=["cotton"]))
        check(saved.status_code == HTTPStatus.CREATED, f"put sku {sku}: {saved.status_code}")
    changes = StockChangesInput(
        changes=[
            SetStockChange(sku="TS-NAVY-M", location="tsukuba", op="set", on_hand=10, reason="cycle_count"),
            SetStockChange(sku="TS-NAVY-L", location="tsukuba", op="set", on_hand=3),
            AdjustStockChange(sku="TS-NAVY-M", location="tsukuba", op="adjust", delta=-1, reason="sold_in_store"),
        ]
    )
    applied = change_stock.sync_detailed(brand, client=client, body=changes, idempotency_key=str(uuid.uuid4()))
    results = applied.parsed
    check(results is not None and not isinstance(results, Problem), f"stock changes: {applied.status_code}")
    assert results is not None and not isinstance(results, Problem)
    check([r.status.value for r in results.results] == ["applied"] * 3, f"stock results: {results}")
    stock = get_stock.sync(brand, "TS-NAVY-M", client=client)
    check(stock is not None and not isinstance(stock, Problem), "get stock")
    assert stock is not None and not isinstance(stock, Problem)
    check(stock.total.on_hand == 9 and stock.total.available == 9, f"stock after the changes: {stock.total}")
    return lsn_of(applied.headers)


def reserve_and_ship(client: AuthenticatedClient, brand: str) -> None:
    """Checkout reserves; the warehouse ships it through to `shipped`."""
    reservation = create_reservation.sync(
        brand,
        client=client,
        body=ReservationInput(id="R-1", channel="brand_ec", ttl_seconds=600, lines=[LineInput(sku="TS-NAVY-M", quantity=2)]),
    )
    check(reservation is not None and not isinstance(reservation, Problem), f"reserve: {reservation}")
    assert reservation is not None and not isinstance(reservation, Problem)
    check(reservation.status == ReservationStatus.ACTIVE and reservation.lines[0].location == "tsukuba", f"{reservation}")
    ship_to = ShipTo(name="山田 太郎", postal_code="100-0001", prefecture="東京都", address="千代田区1-1")
    shipment = create_shipment.sync(
        brand, client=client, body=ShipmentFromReservation(id="SH-1", reservation_id="R-1", order_ref="EC-1", ship_to=ship_to)
    )
    check(shipment is not None and not isinstance(shipment, Problem), f"ship: {shipment}")
    for status in [ShipmentStatusInputStatus.PICKING, ShipmentStatusInputStatus.PACKED, ShipmentStatusInputStatus.SHIPPED]:
        body = ShipmentStatusInput(status=status, tracking_number="1234-5678-9012", carrier="yamato")
        moved = set_shipment_status.sync(brand, "SH-1", client=client, body=body)
        check(moved is not None and not isinstance(moved, Problem), f"status {status}: {moved}")
        assert moved is not None and not isinstance(moved, Problem)
        check(moved.status.value == status.value, f"status is {moved.status}")
    stock = get_stock.sync(brand, "TS-NAVY-M", client=client)
    assert stock is not None and not isinstance(stock, Problem)
    check(stock.total.on_hand == 7 and stock.total.reserved == 0, f"stock after shipping: {stock.total}")


def shortage_is_a_typed_problem(client: AuthenticatedClient, brand: str) -> None:
    """More than there is: 409 `insufficient_stock` with what could not be covered."""
    answer = create_reservation.sync_detailed(
        brand,
        client=client,
        body=ReservationInput(id="R-2", channel="brand_ec", lines=[LineInput(sku="TS-NAVY-L", quantity=50)]),
    )
    problem = answer.parsed
    check(answer.status_code == HTTPStatus.CONFLICT and isinstance(problem, Problem), f"shortage: {answer.status_code}")
    assert isinstance(problem, Problem)
    check(problem.code == ErrorCode.INSUFFICIENT_STOCK, f"code {problem.code}")
    shortages = problem.shortages
    check(isinstance(shortages, list) and len(shortages) == 1, f"shortages {shortages}")
    assert isinstance(shortages, list)
    check(shortages[0].sku == "TS-NAVY-L" and shortages[0].requested == 50 and shortages[0].available == 3, f"{shortages[0]}")


def follow_the_feed(client: AuthenticatedClient, brand: str) -> str:
    """Reads the whole feed by cursor, two events a page; returns the last cursor."""
    after = "0"
    seen: list[str] = []
    shipped = False
    while True:
        page = list_events.sync(brand, client=client, after=after, limit=2)
        check(isinstance(page, EventPage), f"events: {page}")
        assert isinstance(page, EventPage)
        for event in page.events:
            seen.append(event.type_)
            if isinstance(event, StockChangedEvent) and event.data.sku == "TS-NAVY-M":
                tsukuba = event.data.locations["tsukuba"]
                check(tsukuba.on_hand >= 0 and event.data.total.on_hand == tsukuba.on_hand, f"{event.data}")
            elif isinstance(event, SkuUpsertedEvent):
                check(event.data.color == "navy" and event.data.price == 3990, f"{event.data}")
            elif isinstance(event, ShipmentStatusChangedEvent) and event.data.status == ShipmentStatus.SHIPPED:
                shipped = event.data.tracking_number == "1234-5678-9012"
        if page.next_ == after:
            break
        after = page.next_
    for kind in ["brand.created", "sku.upserted", "stock.changed", "reservation.created", "shipment.created", "shipment.status_changed"]:
        check(kind in seen, f"{kind} not in the feed: {seen}")
    check(shipped, "no shipment.status_changed to shipped with its tracking number")
    return after


class Receiver(BaseHTTPRequestHandler):
    deliveries: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        Receiver.deliveries.put(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def signed(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks signature: HMAC-SHA256 of `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(f"v1,{expected}", s) for s in headers["webhook-signature"].split())


def webhook(client: AuthenticatedClient, brand: str) -> None:
    """Subscribes a local receiver to stock changes, changes stock, checks the delivery."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/zaiko"
        created = create_webhook.sync(brand, client=client, body=WebhookInput(url=url, events=[FeedEventType.STOCK_CHANGED]))
        check(created is not None and not isinstance(created, Problem), f"webhook: {created}")
        assert created is not None and not isinstance(created, Problem)
        secret = created.secret
        check(isinstance(secret, str) and secret.startswith("whsec_"), "the secret is shown on creation")
        assert isinstance(secret, str)
        change = StockChangesInput(changes=[AdjustStockChange(sku="TS-NAVY-L", location="tsukuba", op="adjust", delta=5)])
        change_stock.sync(brand, client=client, body=change, idempotency_key=str(uuid.uuid4()))
        headers, body = Receiver.deliveries.get(timeout=DEADLINE_S)
        check(signed(secret, headers, body), "the delivery's signature does not verify")
        # A delivery is one feed event: the same typed union as the feed's.
        event = EventPage.from_dict({"events": [json.loads(body)], "next": "0"}).events[0]
        check(isinstance(event, StockChangedEvent), f"delivered {event.type_}")
        assert isinstance(event, StockChangedEvent)
        check(event.data.sku == "TS-NAVY-L" and event.data.cause.delta == 5 and event.id == headers["webhook-id"], f"{event}")
    finally:
        server.shutdown()


def stock_import(client: AuthenticatedClient, brand: str) -> None:
    """A CSV of stock levels, uploaded and followed to its end."""
    csv = "sku,location,on_hand,reason\nTS-NAVY-M,tsukuba,20,import\nTS-NAVY-L,tsukuba,30,import\n"
    job = create_import.sync(
        brand,
        client=client,
        body=File(payload=io.BytesIO(csv.encode()), file_name="stock.csv", mime_type="text/csv"),
        kind=ImportKind.STOCK,
        idempotency_key=str(uuid.uuid4()),
    )
    check(job is not None and not isinstance(job, Problem), f"import: {job}")
    assert job is not None and not isinstance(job, Problem)
    deadline = time.monotonic() + DEADLINE_S
    while job.status in (ImportStatus.QUEUED, ImportStatus.RUNNING):
        check(time.monotonic() < deadline, f"the import did not finish: {job.status}")
        time.sleep(0.1)
        polled = get_import.sync(brand, job.id, client=client)
        assert polled is not None and not isinstance(polled, Problem)
        job = polled
    check(job.status == ImportStatus.DONE and job.rows_ok == 2 and job.rows_failed == 0, f"import ended {job.status}: {job.errors}")
    stock = get_stock.sync(brand, "TS-NAVY-L", client=client)
    assert stock is not None and not isinstance(stock, Problem)
    check(stock.total.on_hand == 30, f"stock after the import: {stock.total}")


def search_reads_the_write(client: AuthenticatedClient, brand: str) -> None:
    """A catalog change, then a search that waits for it with `min_lsn`."""
    saved = put_sku.sync_detailed(brand, "TS-NAVY-S", client=client, body=SkuInput(name="オーバーサイズ Tシャツ ネイビー S", price=3490))
    check(saved.status_code == HTTPStatus.CREATED, f"put sku: {saved.status_code}")
    result = search_skus.sync(client=client, q="Tシャツ", brand=brand, min_lsn=lsn_of(saved.headers), limit=10)
    check(result is not None and not isinstance(result, Problem), f"search: {result}")
    assert result is not None and not isinstance(result, Problem)
    skus = {hit.sku for hit in result.hits}
    check("TS-NAVY-S" in skus and result.total == 3, f"search found {sorted(skus)} of {result.total}")


def main() -> None:
    base = os.environ["ZAIKO_URL"]
    brand = f"ec-py-{uuid.uuid4().hex[:8]}"
    client = setup(base, os.environ["ZAIKO_ADMIN_TOKEN"], brand)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("catalog and stock changes", lambda: print(f"  stock write at lsn {catalog_and_stock(client, brand)}")),
        ("a reservation and a shipment through shipped", lambda: reserve_and_ship(client, brand)),
        ("a typed 409 problem", lambda: shortage_is_a_typed_problem(client, brand)),
        ("the feed by cursor, typed", lambda: print(f"  feed read to cursor {follow_the_feed(client, brand)}")),
        ("a signed webhook delivery", lambda: webhook(client, brand)),
        ("a stock import", lambda: stock_import(client, brand)),
        ("a search with min_lsn", lambda: search_reads_the_write(client, brand)),
    ]
    failed = 0
    for name, step in steps:
        try:
            step()
            print(f"ok: {name}")
        except Failed as e:
            failed += 1
            print(f"FAILED: {name}: {e}")
    print(f"python client: {len(steps) - failed} passed, {failed} failed")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
