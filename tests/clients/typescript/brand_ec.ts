// A brand EC site's integration, written against the types openapi-typescript generates
// from zaiko's /openapi.json alone (zaiko.d.ts), through openapi-fetch. tests/clients/run.sh
// generates the types, checks this file with `tsc --noEmit` (strict) and runs it against
// a live server: catalog and stock, a reservation shipped through to `shipped`, the change
// feed by cursor with typed event data, a signed webhook, a stock import, a search with
// `min_lsn` that reads its own write, and a typed 409 problem.
//
//   ZAIKO_URL=http://127.0.0.1:8080 ZAIKO_ADMIN_TOKEN=... node out/brand_ec.js

import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";

import createClient, { type Client } from "openapi-fetch";

import type { components, paths } from "./zaiko.js";

type Schemas = components["schemas"];
type FeedEvent = Schemas["FeedEvent"];
type Api = Client<paths>;

const DEADLINE_MS = 30_000;

class Failed extends Error {}

function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new Failed(what);
}

function env(name: string): string {
  const v = process.env[name];
  check(v !== undefined && v !== "", `set ${name}`);
  return v;
}

/** The journal position of a durable write: `X-Zaiko-Lsn`. */
function lsnOf(response: Response): number {
  const raw = response.headers.get("x-zaiko-lsn");
  check(raw !== null, `no X-Zaiko-Lsn on a ${response.status} write`);
  return Number(raw);
}

function client(base: string, token: string): Api {
  return createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${token}` } });
}

/** What the platform's admin does once: the brand, a location, a brand token. */
async function setup(base: string, adminToken: string, brand: string): Promise<Api> {
  const admin = client(base, adminToken);
  const created = await admin.POST("/v1/brands", { body: { id: brand, name: "ブランドB" } });
  check(created.data !== undefined, `create brand: ${JSON.stringify(created.error)}`);
  const location = await admin.PUT("/v1/locations/{location}", {
    params: { path: { location: "tsukuba" } },
    body: { name: "つくば", kind: "warehouse" },
  });
  check(location.data !== undefined, `put location: ${JSON.stringify(location.error)}`);
  // The body is optional: none at all.
  const token = await admin.POST("/v1/brands/{brand}/tokens", { params: { path: { brand } } });
  check(token.data !== undefined && token.data.role === "brand", `brand token: ${JSON.stringify(token.error)}`);
  return client(base, token.data.token);
}

/** Two SKUs with stock; returns the LSN of the stock write. */
async function catalogAndStock(api: Api, brand: string): Promise<number> {
  for (const [sku, name] of [["TS-NAVY-M", "オーバーサイズ Tシャツ ネイビー M"], ["TS-NAVY-L", "オーバーサイズ Tシャツ ネイビー L"]] as const) {
    const saved = await api.PUT("/v1/brands/{brand}/skus/{sku}", {
      params: { path: { brand, sku } },
      body: { name, price: 3990, color: "navy", tags: ["cotton"] },
    });
    check(saved.response.status === 201, `put sku ${sku}: ${saved.response.status}`);
  }
  const changes: Schemas["StockChangeInput"][] = [
    { sku: "TS-NAVY-M", location: "tsukuba", op: "set", on_hand: 10, reason: "cycle_count" },
    { sku: "TS-NAVY-L", location: "tsukuba", op: "set", on_hand: 3 },
    { sku: "TS-NAVY-M", location: "tsukuba", op: "adjust", delta: -1, reason: "sold_in_store" },
  ];
  const applied = await api.POST("/v1/brands/{brand}/stock/changes", {
    params: { path: { brand }, header: { "Idempotency-Key": randomUUID() } },
    body: { changes },
  });
  check(applied.data !== undefined, `stock changes: ${JSON.stringify(applied.error)}`);
  check(applied.data.results.every((r) => r.status === "applied"), `stock results: ${JSON.stringify(applied.data)}`);
  const stock = await api.GET("/v1/brands/{brand}/skus/{sku}/stock", { params: { path: { brand, sku: "TS-NAVY-M" } } });
  check(stock.data !== undefined && stock.data.total.on_hand === 9 && stock.data.total.available === 9, "stock after the changes");
  return lsnOf(applied.response);
}

/** Checkout reserves; the warehouse ships it through to `shipped`. */
async function reserveAndShip(api: Api, brand: string): Promise<void> {
  const reservation = await api.POST("/v1/brands/{brand}/reservations", {
    params: { path: { brand } },
    body: { id: "R-1", channel: "brand_ec", ttl_seconds: 600, lines: [{ sku: "TS-NAVY-M", quantity: 2 }] },
  });
  check(reservation.data !== undefined, `reserve: ${JSON.stringify(reservation.error)}`);
  check(reservation.data.status === "active" && reservation.data.lines[0]?.location === "tsukuba", "reservation held");
  const shipment = await api.POST("/v1/brands/{brand}/shipments", {
    params: { path: { brand } },
    body: {
      id: "SH-1",
      reservation_id: "R-1",
      order_ref: "EC-1",
      ship_to: { name: "山田 太郎", postal_code: "100-0001", prefecture: "東京都", address: "千代田区1-1" },
    },
  });
  check(shipment.data !== undefined && shipment.data.status === "accepted", `ship: ${JSON.stringify(shipment.error)}`);
  for (const status of ["picking", "packed", "shipped"] as const) {
    const moved = await api.POST("/v1/brands/{brand}/shipments/{id}/status", {
      params: { path: { brand, id: "SH-1" } },
      body: { status, tracking_number: "1234-5678-9012", carrier: "yamato" },
    });
    check(moved.data !== undefined && moved.data.status === status, `status ${status}: ${JSON.stringify(moved.error)}`);
  }
  const stock = await api.GET("/v1/brands/{brand}/skus/{sku}/stock", { params: { path: { brand, sku: "TS-NAVY-M" } } });
  check(stock.data !== undefined && stock.data.total.on_hand === 7 && stock.data.total.reserved === 0, "stock after shipping");
}

/** More than there is: 409 `insufficient_stock` with what could not be covered. */
async function shortageIsATypedProblem(api: Api, brand: string): Promise<void> {
  const answer = await api.POST("/v1/brands/{brand}/reservations", {
    params: { path: { brand } },
    body: { id: "R-2", channel: "brand_ec", lines: [{ sku: "TS-NAVY-L", quantity: 50 }] },
  });
  check(answer.response.status === 409 && answer.error !== undefined, `shortage: ${answer.response.status}`);
  const problem: Schemas["Problem"] = answer.error;
  check(problem.code === "insufficient_stock", `code ${problem.code}`);
  const shortage = problem.shortages?.[0];
  check(shortage !== undefined && shortage.sku === "TS-NAVY-L" && shortage.requested === 50 && shortage.available === 3, "shortages");
}

/** Reads the whole feed by cursor, two events a page; returns the last cursor. */
async function followTheFeed(api: Api, brand: string): Promise<string> {
  let after = "0";
  const seen = new Set<FeedEvent["type"]>();
  let shipped = false;
  for (;;) {
    const page = await api.GET("/v1/brands/{brand}/events", { params: { path: { brand }, query: { after, limit: 2 } } });
    check(page.data !== undefined, `events: ${JSON.stringify(page.error)}`);
    for (const event of page.data.events) {
      seen.add(event.type);
      switch (event.type) {
        case "stock.changed": {
          const tsukuba = event.data.locations["tsukuba"];
          check(tsukuba !== undefined && event.data.total.on_hand === tsukuba.on_hand, "stock.changed levels");
          break;
        }
        case "sku.upserted":
          check(event.data.color === "navy" && event.data.price === 3990, "sku.upserted fields");
          break;
        case "shipment.status_changed":
          if (event.data.status === "shipped") shipped = event.data.tracking_number === "1234-5678-9012";
          break;
        default:
          break;
      }
    }
    if (page.data.next === after) break;
    after = page.data.next;
  }
  const expected: FeedEvent["type"][] = ["brand.created", "sku.upserted", "stock.changed", "reservation.created", "shipment.created"];
  for (const kind of expected) check(seen.has(kind), `${kind} not in the feed`);
  check(shipped, "no shipment.status_changed to shipped with its tracking number");
  return after;
}

interface Delivery {
  headers: IncomingHttpHeaders;
  body: string;
}

/** The Standard Webhooks signature: HMAC-SHA256 of `id.timestamp.body`. */
function signed(secret: string, headers: IncomingHttpHeaders, body: string): boolean {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const mac = createHmac("sha256", key).update(`${String(headers["webhook-id"])}.${String(headers["webhook-timestamp"])}.${body}`);
  const expected = Buffer.from(`v1,${mac.digest("base64")}`);
  return String(headers["webhook-signature"])
    .split(" ")
    .some((s) => s.length === expected.length && timingSafeEqual(Buffer.from(s), expected));
}

/** Subscribes a local receiver to stock changes, changes stock, checks the delivery. */
async function webhook(api: Api, brand: string): Promise<void> {
  let deliver: (d: Delivery) => void = () => undefined;
  const delivered = new Promise<Delivery>((resolve) => (deliver = resolve));
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      deliver({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const created = await api.POST("/v1/brands/{brand}/webhooks", {
      params: { path: { brand } },
      body: { url: `http://127.0.0.1:${port}/hooks/zaiko`, events: ["stock.changed"] },
    });
    check(created.data !== undefined, `webhook: ${JSON.stringify(created.error)}`);
    const secret = created.data.secret;
    check(typeof secret === "string" && secret.startsWith("whsec_"), "the secret is shown on creation");
    await api.POST("/v1/brands/{brand}/stock/changes", {
      params: { path: { brand }, header: { "Idempotency-Key": randomUUID() } },
      body: { changes: [{ sku: "TS-NAVY-L", location: "tsukuba", op: "adjust", delta: 5 }] },
    });
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Failed("no delivery in time")), DEADLINE_MS).unref());
    const { headers, body } = await Promise.race([delivered, timeout]);
    check(signed(secret, headers, body), "the delivery's signature does not verify");
    // A delivery is one feed event: the same typed union as the feed's.
    const event = JSON.parse(body) as FeedEvent;
    check(event.type === "stock.changed", `delivered ${event.type}`);
    check(event.data.sku === "TS-NAVY-L" && event.data.cause.delta === 5 && event.id === headers["webhook-id"], "delivered data");
  } finally {
    server.close();
  }
}

/** A CSV of stock levels, uploaded as `text/csv` and followed to its end. */
async function stockImport(api: Api, brand: string): Promise<void> {
  const csv = "sku,location,on_hand,reason\nTS-NAVY-M,tsukuba,20,import\nTS-NAVY-L,tsukuba,30,import\n";
  const queued = await api.POST("/v1/brands/{brand}/imports", {
    params: { path: { brand }, query: { kind: "stock" }, header: { "Idempotency-Key": randomUUID() } },
    body: csv,
    bodySerializer: (file: string) => file,
    headers: { "Content-Type": "text/csv" },
  });
  check(queued.data !== undefined, `import: ${JSON.stringify(queued.error)}`);
  let job: Schemas["ImportView"] = queued.data;
  const deadline = Date.now() + DEADLINE_MS;
  while (job.status === "queued" || job.status === "running") {
    check(Date.now() < deadline, `the import did not finish: ${job.status}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const polled = await api.GET("/v1/brands/{brand}/imports/{id}", { params: { path: { brand, id: job.id } } });
    check(polled.data !== undefined, "poll the import");
    job = polled.data;
  }
  check(job.status === "done" && job.rows_ok === 2 && job.rows_failed === 0, `import ended ${job.status}: ${JSON.stringify(job.errors)}`);
  const stock = await api.GET("/v1/brands/{brand}/skus/{sku}/stock", { params: { path: { brand, sku: "TS-NAVY-L" } } });
  check(stock.data !== undefined && stock.data.total.on_hand === 30, "stock after the import");
}

/** A catalog change, then a search that waits for it with `min_lsn`. */
async function searchReadsTheWrite(api: Api, brand: string): Promise<void> {
  const saved = await api.PUT("/v1/brands/{brand}/skus/{sku}", {
    params: { path: { brand, sku: "TS-NAVY-S" } },
    body: { name: "オーバーサイズ Tシャツ ネイビー S", price: 3490 },
  });
  check(saved.response.status === 201, `put sku: ${saved.response.status}`);
  const found = await api.GET("/v1/search/skus", {
    params: { query: { q: "Tシャツ", brand, min_lsn: lsnOf(saved.response), limit: 10 } },
  });
  check(found.data !== undefined, `search: ${JSON.stringify(found.error)}`);
  const skus = found.data.hits.map((h) => h.sku);
  check(skus.includes("TS-NAVY-S") && found.data.total === 3, `search found ${skus.join(",")} of ${found.data.total}`);
}

async function main(): Promise<void> {
  const brand = `ec-ts-${randomUUID().slice(0, 8)}`;
  const api = await setup(env("ZAIKO_URL"), env("ZAIKO_ADMIN_TOKEN"), brand);
  const steps: [string, () => Promise<void>][] = [
    ["catalog and stock changes", async () => console.log(`  stock write at lsn ${await catalogAndStock(api, brand)}`)],
    ["a reservation and a shipment through shipped", () => reserveAndShip(api, brand)],
    ["a typed 409 problem", () => shortageIsATypedProblem(api, brand)],
    ["the feed by cursor, typed", async () => console.log(`  feed read to cursor ${await followTheFeed(api, brand)}`)],
    ["a signed webhook delivery", () => webhook(api, brand)],
    ["a stock import", () => stockImport(api, brand)],
    ["a search with min_lsn", () => searchReadsTheWrite(api, brand)],
  ];
  let failed = 0;
  for (const [name, step] of steps) {
    try {
      await step();
      console.log(`ok: ${name}`);
    } catch (e) {
      if (!(e instanceof Failed)) throw e;
      failed += 1;
      console.log(`FAILED: ${name}: ${e.message}`);
    }
  }
  console.log(`typescript client: ${steps.length - failed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

await main();
