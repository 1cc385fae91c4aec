#!/usr/bin/env python3
"""A stand-in for `zaiko serve --demo`, for developing the UI before search lands.

    python3 tests/browser/fake_api.py serve --demo --listen 127.0.0.1:0 --data-dir /tmp/x --admin-token T

It takes the real server's command line (unknown flags are ignored), prints the same
`zaiko listening on http://HOST:PORT` line, loads `data/demo/` into memory, and answers
the parts of the contract (`api-v1.md`) the UI uses, with contract-shaped JSON:

  POST /v1/tokens {"role":"viewer"}            (admin)
  GET  /v1/brands, /v1/locations
  GET  /v1/search/skus?q&brand&category&color&size&location&channel&in_stock&group&sort&limit&cursor
  GET  /v1/search/labels                       (a few colour and category names)
  GET  /v1/brands/{brand}/skus/{sku}/stock
  GET  /v1/brands/{brand}/skus/{sku}/history   (only the changes made through this fake)
  GET  /v1/brands/{brand}/channels
  POST /v1/brands/{brand}/stock/changes        (admin; `adjust` and `mark_unsellable` only)
  POST /v1/brands/{brand}/transfers, .../transfers/{id}/ship   (admin; one line each, no checks beyond stock)
  GET  /v1/search/shipments?q&brand&status&created_from&created_to&limit&cursor
  GET  /v1/brands/{brand}/shipments/{id}
  GET  /ui, /ui/, /ui/app.js, /ui/app.css, /ui/favicon.svg   (from src/http/ui, with the real CSP)
  GET  /healthz, /readyz

Search semantics follow bench/peers/search: NFKC + lowercase, every
whitespace-separated term a substring of name, brand name, sku, product id or a tag.
Errors are application/problem+json. Stdlib only; nothing here ships.
"""
import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import sys
import unicodedata
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UI_DIR = os.path.join(ROOT, "src", "http", "ui")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
ASSETS = {"/ui/": ("index.html", "text/html; charset=utf-8"), "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/ui/app.css": ("app.css", "text/css; charset=utf-8"), "/ui/favicon.svg": ("favicon.svg", "image/svg+xml")}
FACETS = ["brand", "category", "color", "size"]
# Enough names to see them in the UI; the real table is the search's.
LABELS = {
    "colors": {"navy": {"ja": "ネイビー", "en": "Navy"}, "black": {"ja": "ブラック", "en": "Black"},
               "white": {"ja": "ホワイト", "en": "White"}, "gray": {"ja": "グレー", "en": "Gray"}},
    "categories": {"shoes/sneakers": {"ja": "スニーカー", "en": "Sneakers"}, "tops/t-shirts": {"ja": "Tシャツ", "en": "T-shirts"}},
}
GROUP_SKUS_MAX = 10
FACET_VALUES_MAX = 30


def norm(s):
    return unicodedata.normalize("NFKC", s or "").lower()


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Problem(Exception):
    def __init__(self, status, code, detail, **extra):
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


class Store:
    """The demo data, replayed into plain dicts the way the server's domain would."""

    def __init__(self, data_dir):
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        self.brands, self.locations, self.skus, self.shipments = {}, {}, {}, {}
        self.holds = {}
        self.changes = {}  # (brand, sku) -> history changes made through the fake, oldest first
        self.seq = 0
        self.transfers = {}  # (brand, id) -> transfer made through the fake
        read = lambda name: [json.loads(line) for line in open(os.path.join(data_dir, name), encoding="utf-8")]  # noqa: E731
        for b in read("brands.ndjson"):
            self.brands[b["id"]] = {"id": b["id"], "name": b["name"], "created_at": iso(now)}
        for loc in read("locations.ndjson"):
            self.locations[loc["location"]] = {"id": loc["location"], "name": loc["name"], "kind": loc["kind"],
                                               "created_at": iso(now), "updated_at": iso(now)}
        self.channels = {(c["brand"], c["channel"]): c for c in read("channels.ndjson")}
        for i, s in enumerate(read("skus.ndjson")):
            s = dict(s)
            s.setdefault("tags", [])
            s.setdefault("attributes", {})
            s["levels"] = {}
            s["stock_version"] = 0
            s["updated_at"] = iso(now - dt.timedelta(minutes=i))
            brand_name = self.brands[s["brand"]]["name"]
            s["_name"] = norm(s["name"])
            s["_text"] = "\x00".join(norm(x) for x in [s["name"], brand_name, s["sku"], s.get("product_id", "")] + s["tags"])
            self.skus[(s["brand"], s["sku"])] = s
        for batch in read("stock_changes.ndjson"):
            for c in batch["changes"]:
                s = self.skus[(batch["brand"], c["sku"])]
                lv = s["levels"].setdefault(c["location"], {"on_hand": 0, "reserved": 0, "safety_stock": 0})
                if c["op"] == "set":
                    lv["on_hand"] = c["on_hand"]
                elif c["op"] == "set_safety_stock":
                    lv["safety_stock"] = c["quantity"]
                s["stock_version"] += 1
        for r in read("reservations.ndjson"):
            self.holds[(r["brand"], r["id"])] = self.hold(r["brand"], r["channel"], r["lines"])
        ships = read("shipments.ndjson")
        span = dt.timedelta(days=30)
        for i, b in enumerate(ships):
            created = now - span + span * i / max(1, len(ships))
            lines = self.holds.pop((b["brand"], b["reservation_id"])) if "reservation_id" in b else self.hold(b["brand"], b["channel"], b["lines"])
            self.shipments[(b["brand"], b["id"])] = {
                "id": b["id"], "brand": b["brand"], "order_ref": b["order_ref"], "channel": b["channel"],
                "reservation_id": b.get("reservation_id"), "status": "accepted", "lines": lines, "ship_to": b["ship_to"],
                "tracking_number": None, "carrier": None, "history": [{"status": "accepted", "at": iso(created)}],
                "created_at": iso(created), "updated_at": iso(created), "_created": created}
        for u in read("shipment_status.ndjson"):
            shp = self.shipments[(u["brand"], u["shipment"])]
            at = dt.datetime.strptime(shp["updated_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc) + dt.timedelta(hours=5)
            at = min(at, now)
            shp["status"] = u["status"]
            shp["history"].append({"status": u["status"], "at": iso(at)})
            shp["updated_at"] = iso(at)
            for k in ("tracking_number", "carrier"):
                if k in u:
                    shp[k] = u[k]
            if u["status"] in ("shipped", "cancelled"):
                for line in shp["lines"]:
                    lv = self.skus[(u["brand"], line["sku"])]["levels"][line["location"]]
                    lv["reserved"] -= line["quantity"]
                    if u["status"] == "shipped":
                        lv["on_hand"] -= line["quantity"]
        for s in self.skus.values():
            s["on_hand"], s["available"] = self.totals(s)
        for shp in self.shipments.values():
            shp["_text"] = "\x00".join(norm(x) for x in [shp["id"], shp["order_ref"], shp["tracking_number"] or ""] + [line["sku"] for line in shp["lines"]])

    @staticmethod
    def available(lv):
        return max(0, lv["on_hand"] - lv["reserved"] - lv["safety_stock"])

    def totals(self, s):
        return sum(lv["on_hand"] for lv in s["levels"].values()), sum(self.available(lv) for lv in s["levels"].values())

    def hold(self, brand, channel, lines):
        locs = self.channels[(brand, channel)]["locations"]
        out = []
        for line in lines:
            levels = self.skus[(brand, line["sku"])]["levels"]
            need = line["quantity"]
            for loc in sorted(locs, key=lambda loc: (-self.available(levels.get(loc, {"on_hand": 0, "reserved": 0, "safety_stock": 0})), loc)):
                if loc not in levels:
                    continue
                take = min(need, self.available(levels[loc]))
                if take:
                    levels[loc]["reserved"] += take
                    out.append({"sku": line["sku"], "location": loc, "quantity": take})
                    need -= take
            assert need == 0, (brand, line)
        return out

    def adjust(self, brand, index, c):
        """An `adjust` or `mark_unsellable` stock change, recorded as a history change as the server would."""
        s = self.skus.get((brand, c["sku"]))
        if not s or c.get("op") not in ("adjust", "mark_unsellable"):
            return {"index": index, "status": "rejected", "code": "not_found", "detail": "the fake adjusts known SKUs only"}
        lv = s["levels"].setdefault(c["location"], dict(EMPTY))
        if c["op"] == "mark_unsellable" and self.available(lv) < c["quantity"]:
            return {"index": index, "status": "rejected", "code": "insufficient_stock", "detail": "not that many units available"}
        def move():
            if c["op"] == "adjust":
                lv["on_hand"] += c["delta"]
            else:
                lv["on_hand"] -= c["quantity"]
                lv["unsellable"] = lv.get("unsellable", 0) + c["quantity"]
        amount = {"delta": c["delta"]} if c["op"] == "adjust" else {"quantity": c["quantity"]}
        cause = {"kind": c["op"], **amount, **({"reason": c["reason"]} if c.get("reason") else {})}
        self.record(s, [c["location"]], move, cause)
        return {"index": index, "status": "applied", "sku": c["sku"], "location": c["location"], "version": s["stock_version"],
                "on_hand": lv["on_hand"], "available": self.available(lv)}

    def record(self, s, locations, move, cause):
        """Applies `move` to a SKU's levels and records the change in its history."""
        before = self.stock_view(s)
        move()
        s["stock_version"] += 1
        s["on_hand"], s["available"] = self.totals(s)
        s["updated_at"] = iso(dt.datetime.now(dt.timezone.utc))
        after = self.stock_view(s)
        self.seq += 1
        delta = {loc: {k: after["locations"][loc][k] - before["locations"].get(loc, {}).get(k, 0) for k in LEVELS} for loc in locations}
        self.changes.setdefault((s["brand"], s["sku"]), []).append(
            {"seq": self.seq, "id": f"evt_{self.seq}_0", "at": s["updated_at"], **after, "cause": cause,
             "delta": {"locations": delta, "total": {k: after["total"][k] - before["total"][k] for k in LEVELS}}})

    def ship_transfer(self, brand, t):
        """Ships a draft transfer: its units leave the origin's on_hand for the destination's in_transit."""
        if t["status"] != "draft":
            raise Problem(409, "invalid_transition", f"transfer {t['id']} is {t['status']}")
        for line in t["lines"]:
            s = self.skus[(brand, line["sku"])]
            origin = s["levels"].setdefault(t["origin"], dict(EMPTY))
            if self.available(origin) < line["quantity"]:
                raise Problem(409, "insufficient_stock", f"{line['sku']} has fewer than {line['quantity']} units available at {t['origin']}")
            def move(origin=origin, s=s, q=line["quantity"]):
                origin["on_hand"] -= q
                dest = s["levels"].setdefault(t["destination"], dict(EMPTY))
                dest["in_transit"] = dest.get("in_transit", 0) + q
            self.record(s, [t["origin"], t["destination"]], move, {"kind": "transfer_shipped", "id": t["id"]})
        t["status"] = "shipped"
        return self.seq

    def stock_view(self, s):
        def view(lv):
            return {"on_hand": lv["on_hand"], "reserved": lv["reserved"], "safety_stock": lv["safety_stock"],
                    "available": self.available(lv), "incoming": 0, "unsellable": lv.get("unsellable", 0), "in_transit": lv.get("in_transit", 0)}
        locs = {loc: view(lv) for loc, lv in sorted(s["levels"].items())}
        total = {k: sum(v[k] for v in locs.values()) for k in LEVELS}
        channels = {}
        for (b, c), ch in sorted(self.channels.items()):
            if b == s["brand"]:
                channels[c] = {"available": max(0, sum(locs[loc]["available"] for loc in ch["locations"] if loc in locs) - ch["buffer"])}
        return {"sku": s["sku"], "version": s["stock_version"], "locations": locs, "total": total, "channels": channels}


def page(items, params):
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        raise Problem(400, "invalid_request", "limit must be an integer", errors=[{"field": "limit", "detail": "must be 1..=100"}])
    if not 1 <= limit <= 100:
        raise Problem(400, "invalid_request", "limit must be 1..=100", errors=[{"field": "limit", "detail": "must be 1..=100"}])
    offset = 0
    if params.get("cursor"):
        try:
            offset = int(base64.urlsafe_b64decode(params["cursor"].encode()).decode())
        except Exception:
            raise Problem(400, "invalid_request", "the cursor is not one this server gave out", errors=[{"field": "cursor", "detail": "unknown cursor"}])
    chunk = items[offset:offset + limit]
    nxt = base64.urlsafe_b64encode(str(offset + limit).encode()).decode() if offset + limit < len(items) else None
    return chunk, nxt


def facet_counts(items, fields):
    out = {}
    for f in fields:
        counts = {}
        for it in items:
            v = it.get(f)
            if v:
                counts[v] = counts.get(v, 0) + 1
        out[f] = [{"value": v, "count": n} for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:FACET_VALUES_MAX]
    return out


def search_skus(store, p):
    terms = [norm(t) for t in p.get("q", "").split() if t]
    items = []
    for s in store.skus.values():
        if any(t not in s["_text"] for t in terms):
            continue
        ok = True
        for f in FACETS:
            want = p.get(f)
            if want and not (s.get(f) == want or (f == "category" and "/" not in want and (s.get(f) or "").startswith(want + "/"))):
                ok = False
        if ok and p.get("location") and store.available(s["levels"].get(p["location"], EMPTY)) <= 0:
            ok = False
        if ok and p.get("in_stock") == "true" and (channel_available(store, s, p["channel"]) if p.get("channel") else s["available"]) <= 0:
            ok = False
        if ok:
            items.append(s)
    sort = p.get("sort", "relevance")
    keys = {
        "relevance": lambda s: (-sum(t in s["_name"] for t in terms), s["brand"], s["sku"]),
        "updated_desc": lambda s: (s["updated_at"], s["sku"]),
        "available_desc": lambda s: (-s["available"], s["sku"]),
        "price_asc": lambda s: (s.get("price") or 0, s["sku"]),
        "price_desc": lambda s: (-(s.get("price") or 0), s["sku"]),
    }
    if sort not in keys:
        raise Problem(400, "invalid_request", "unknown sort", errors=[{"field": "sort", "detail": "must be one of " + ", ".join(keys)}])
    items.sort(key=keys[sort], reverse=sort == "updated_desc")
    group = p.get("group")
    if group not in (None, "product"):
        raise Problem(400, "invalid_request", "group must be `product`", errors=[{"field": "query.group", "detail": "must be `product`"}])
    facets = facet_counts(items, FACETS)
    variants = {}
    if group:
        # One hit per product: its best-ranked SKU, with the product's matching SKUs.
        products = {}
        for s in items:
            products.setdefault((s["brand"], s.get("product_id") or s["sku"]), []).append(s)
        items = [v[0] for v in products.values()]
        variants = {(v[0]["brand"], v[0]["sku"]): {"total": len(v), "skus": [x["sku"] for x in v[:GROUP_SKUS_MAX]]} for v in products.values()}
    chunk, nxt = page(items, p)
    hits = []
    for s in chunk:
        hit = {"brand": s["brand"], "sku": s["sku"], "product_id": s.get("product_id"), "name": s["name"], "color": s.get("color"),
               "size": s.get("size"), "category": s.get("category"), "price": s.get("price"), "on_hand": s["on_hand"],
               "available": s["available"], "incoming": 0, "unsellable": sum(lv.get("unsellable", 0) for lv in s["levels"].values()),
               "in_transit": sum(lv.get("in_transit", 0) for lv in s["levels"].values()), "score": float(sum(t in s["_name"] for t in terms))}
        if p.get("channel"):
            hit["channel_available"] = channel_available(store, s, p["channel"])
        if group:
            hit["variants"] = variants[(s["brand"], s["sku"])]
        hits.append(hit)
    return {"total": len(items), "hits": hits, "facets": facets, "next_cursor": nxt}


EMPTY = {"on_hand": 0, "reserved": 0, "safety_stock": 0, "unsellable": 0, "in_transit": 0}
LEVELS = ("on_hand", "reserved", "safety_stock", "available", "incoming", "unsellable", "in_transit")


def channel_available(store, s, channel):
    return store.stock_view(s)["channels"].get(channel, {"available": s["available"]})["available"]


def search_shipments(store, p):
    terms = [norm(t) for t in p.get("q", "").split() if t]
    def parse(name):
        v = p.get(name)
        if not v:
            return None
        try:
            return dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise Problem(400, "invalid_request", f"{name} is not an RFC 3339 time", errors=[{"field": name, "detail": "RFC 3339"}])
    frm, to = parse("created_from"), parse("created_to")
    items = [s for s in store.shipments.values()
             if all(t in s["_text"] for t in terms)
             and (not p.get("brand") or s["brand"] == p["brand"])
             and (not p.get("status") or s["status"] == p["status"])
             and (frm is None or s["_created"] >= frm) and (to is None or s["_created"] < to)]
    items.sort(key=lambda s: s["created_at"], reverse=True)
    chunk, nxt = page(items, p)
    hits = [{"brand": s["brand"], "id": s["id"], "order_ref": s["order_ref"], "channel": s["channel"], "status": s["status"],
             "tracking_number": s["tracking_number"], "carrier": s["carrier"], "skus": sorted({line["sku"] for line in s["lines"]}),
             "created_at": s["created_at"], "updated_at": s["updated_at"], "score": 1.0} for s in chunk]
    return {"total": len(items), "hits": hits, "facets": facet_counts(items, ["brand", "status"]), "next_cursor": nxt}


class Handler(BaseHTTPRequestHandler):
    server_version = "zaiko-fake/0"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if os.environ.get("FAKE_API_LOG"):
            sys.stderr.write("fake-api: " + fmt % args + "\n")

    def send(self, status, body, content_type="application/json", headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def problem(self, p):
        body = {"type": f"/problems/{p.code}", "title": p.code.replace("_", " "), "status": p.status, "detail": p.detail, "code": p.code, **p.extra}
        self.send(p.status, body, "application/problem+json")

    def caller(self):
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        role = self.server.tokens.get(token)
        if not role:
            raise Problem(401, "unauthorized", "send `Authorization: Bearer <token>` with a valid, unrevoked token")
        return role

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        try:
            self.route_get()
        except Problem as p:
            self.problem(p)

    def do_POST(self):
        try:
            url = urlsplit(self.path)
            parts = [unquote(x) for x in url.path.strip("/").split("/")]
            changes = len(parts) == 5 and parts[:2] == ["v1", "brands"] and parts[3:] == ["stock", "changes"]
            transfers = len(parts) in (4, 6) and parts[:2] == ["v1", "brands"] and parts[3] == "transfers" and parts[5:] in ([], ["ship"])
            if url.path != "/v1/tokens" and not changes and not transfers:
                raise Problem(404, "not_found", f"no route for POST {url.path}")
            if self.caller() != "admin":
                raise Problem(403, "forbidden", "this needs the admin token")
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null") or {}
            store = self.server.store
            if changes:
                return self.send(200, {"results": [store.adjust(parts[2], i, c) for i, c in enumerate(body["changes"])]})
            if transfers and len(parts) == 4:
                t = {**body, "status": "draft"}
                store.transfers[(parts[2], body["id"])] = t
                return self.send(201, t)
            if transfers:
                t = store.transfers.get((parts[2], parts[4]))
                if not t:
                    raise Problem(404, "not_found", f"transfer {parts[4]} does not exist")
                lsn = store.ship_transfer(parts[2], t)
                return self.send(200, t, headers=[("X-Zaiko-Lsn", str(lsn))])
            if body.get("role") != "viewer":
                raise Problem(400, "invalid_request", "must be \"viewer\"", errors=[{"field": "role", "detail": "must be \"viewer\""}])
            tid = secrets.token_hex(4)
            token = f"zk_{tid}_{secrets.token_urlsafe(24)}"
            self.server.tokens[token] = "viewer"
            self.send(201, {"id": tid, "token": token})
        except Problem as p:
            self.problem(p)

    def route_get(self):
        url = urlsplit(self.path)
        path, params = url.path, {k: v[-1] for k, v in parse_qs(url.query).items()}
        store = self.server.store
        if path == "/ui":
            return self.send(308, b"", "text/plain", [("Location", "/ui/")])
        if path in ASSETS:
            name, ctype = ASSETS[path]
            with open(os.path.join(UI_DIR, name), "rb") as f:
                data = f.read()
            return self.send(200, data, ctype, [("Content-Security-Policy", CSP), ("Cache-Control", "no-cache"),
                                                ("X-Content-Type-Options", "nosniff"), ("ETag", '"%s"' % hashlib.sha256(data).hexdigest()[:24])])
        if path in ("/healthz", "/readyz"):
            return self.send(200, b"ok", "text/plain")
        self.caller()  # every /v1 read needs a token; the fake has no brand tokens
        parts = [unquote(x) for x in path.strip("/").split("/")]
        if path == "/v1/brands":
            return self.send(200, {"brands": sorted(store.brands.values(), key=lambda b: b["id"])})
        if path == "/v1/locations":
            return self.send(200, {"locations": list(store.locations.values())})
        if path == "/v1/search/skus":
            return self.send(200, search_skus(store, params))
        if path == "/v1/search/shipments":
            return self.send(200, search_shipments(store, params))
        if path == "/v1/search/labels":
            return self.send(200, LABELS)
        if len(parts) == 4 and parts[:2] == ["v1", "brands"] and parts[3] == "channels":
            chans = [{"id": c, "name": ch["name"], "locations": ch["locations"], "buffer": ch["buffer"]}
                     for (b, c), ch in sorted(store.channels.items()) if b == parts[2]]
            return self.send(200, {"channels": chans})
        if len(parts) == 6 and parts[:2] == ["v1", "brands"] and parts[3] == "skus" and parts[5] == "history":
            if (parts[2], parts[4]) not in store.skus:
                raise Problem(404, "not_found", f"no SKU {parts[4]} in brand {parts[2]}")
            changes = store.changes.get((parts[2], parts[4]), [])
            newest = params.get("order") == "newest_first"
            after = int(params["after"]) if params.get("after") else None
            if newest:
                picked = [c for c in reversed(changes) if after is None or c["seq"] < after]
            else:
                picked = [c for c in changes if after is None or c["seq"] > after]
            picked = picked[:int(params.get("limit", "100"))]
            nxt = picked[-1]["seq"] if picked else (after or 0)
            return self.send(200, {"sku": parts[4], "changes": picked, "next": str(nxt)})
        if len(parts) == 6 and parts[:2] == ["v1", "brands"] and parts[3] == "skus" and parts[5] == "stock":
            s = store.skus.get((parts[2], parts[4]))
            if not s:
                raise Problem(404, "not_found", f"no SKU {parts[4]} in brand {parts[2]}")
            return self.send(200, store.stock_view(s))
        if len(parts) == 5 and parts[:2] == ["v1", "brands"] and parts[3] == "shipments":
            s = store.shipments.get((parts[2], parts[4]))
            if not s:
                raise Problem(404, "not_found", f"no shipment {parts[4]} in brand {parts[2]}")
            return self.send(200, {k: v for k, v in s.items() if not k.startswith("_")})
        raise Problem(404, "not_found", f"no route for GET {path}; see /openapi.json")


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("command", choices=["serve"])
    ap.add_argument("--demo", action="store_true", help="accepted for parity; the fake always loads the demo")
    ap.add_argument("--listen", default="127.0.0.1:8080")
    ap.add_argument("--admin-token", default=os.environ.get("ZAIKO_ADMIN_TOKEN", "fake-admin-token-0123456789"))
    ap.add_argument("--demo-data", default=os.path.join(ROOT, "data", "demo"))
    a, _unknown = ap.parse_known_args()  # --data-dir and the rest are accepted and ignored
    host, port = a.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    server.store = Store(a.demo_data)
    server.tokens = {a.admin_token: "admin"}
    print(f"zaiko listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
