//! The crash test under mixed load: stock changes, reservations (held and released),
//! shipments (from lines and from reservations, through picking, packed, shipped,
//! delivered or cancelled), returns of shipped ones (restocked, unsellable, missing),
//! transfers between the locations (shipped, received in part, closed with a
//! write-off, or cancelled), a stock import job, online snapshots and a webhook, all at
//! once; SIGKILL at a random moment; restart; retry what got no answer with the same
//! `Idempotency-Key`; then check that the state is exactly the model's.
//!
//! What each round checks: every SKU's `on_hand`, `reserved`, `unsellable` and
//! `in_transit` at each location, the status of every reservation, shipment, return
//! and transfer touched, and every import job done with
//! all its rows. At the end: the change feed holds each SKU's stock versions exactly
//! once and in order, the webhook receiver got every `stock.changed` event in order per
//! SKU, and `zaiko wal verify` passes on the journal.
//!
//! The journal is cut into small segments and snapshots are taken by request and by
//! schedule, keeping two, so segments are deleted under the load too.
//! `ZAIKO_CRASH_ROUNDS` sets the rounds (default 20), `ZAIKO_CRASH_SEED` repeats a run.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::crash::{assert_wal_verifies, run_until_kill, Outcome};
use crate::helpers::{Options, TestServer, ADMIN};
use crate::receiver::{assert_in_order_per_sku, first_arrivals, wait_until, Receiver};

const BRAND: &str = "mix";
const SKUS: usize = 8;
const LOCS: [&str; 2] = ["tsukuba", "osaka"];
const START: i64 = 1_000_000;
const IMPORT_ROWS: usize = 300;
const WAIT: Duration = Duration::from_secs(120);

/// A place stock is kept: (sku index, location index).
type Place = (usize, usize);

fn sku(i: usize) -> String {
    format!("S{i}")
}

/// What an applied step does to the model.
#[derive(Clone, Debug)]
enum Effect {
    /// `on_hand` moves (adjustments, import rows).
    OnHand(Vec<(Place, i64)>),
    /// `reserved` moves (holds, releases, cancellations).
    Reserved(Vec<(Place, i64)>),
    /// Shipped: `on_hand` and `reserved` both drop.
    Shipped(Vec<(Place, i64)>),
    /// `unsellable` moves (a return's unsellable units).
    Unsellable(Vec<(Place, i64)>),
    /// `in_transit` moves (transfers shipped, received, closed).
    InTransit(Vec<(Place, i64)>),
    /// An object's status (`reservations/R1`, `shipments/SH1`), checked after the round.
    Status(String, &'static str),
    None,
}

#[derive(Clone, Debug)]
enum Body {
    Json(Value),
    Csv(String),
}

/// One request of a worker's plan: sent with its own key, retried with the same key.
#[derive(Clone, Debug)]
struct Step {
    path: String,
    key: String,
    body: Body,
    admin: bool,
    effects: Vec<Effect>,
}

/// Sends a step once: `None` when no answer came (the server died). Any answer must
/// be a success: the load is sized so that nothing is short, illegal or too fast.
fn send(client: &reqwest::blocking::Client, base: &str, token: &str, step: &Step) -> Option<Value> {
    let rb = client
        .post(format!("{base}{}", step.path))
        .bearer_auth(if step.admin { ADMIN } else { token })
        .header("Idempotency-Key", &step.key);
    let rb = match &step.body {
        Body::Json(v) => rb.json(v),
        Body::Csv(text) => rb.header("content-type", "text/csv").body(text.clone()),
    };
    let r = rb.send().ok()?;
    let status = r.status().as_u16();
    let body: Value = r.json().ok()?;
    assert!((200..300).contains(&status), "{} (key {}) answered {status}: {body}", step.path, step.key);
    Some(body)
}

/// Builds the rounds' plans; keys and ids are unique over the whole test.
struct Planner {
    rng: StdRng,
    n: usize,
}

impl Planner {
    fn next(&mut self, prefix: &str) -> String {
        self.n += 1;
        format!("{prefix}{}", self.n)
    }

    fn step(&mut self, path: String, body: Value, effects: Vec<Effect>) -> Step {
        Step { path, key: self.next("k"), body: Body::Json(body), admin: false, effects }
    }

    /// 1..=`max` lines on distinct SKUs, each at a given location, 1..=3 units.
    fn lines(&mut self, max: usize) -> (Value, Vec<(Place, i64)>) {
        let n = self.rng.random_range(1..=max);
        let mut skus: Vec<usize> = (0..SKUS).collect();
        let mut lines = Vec::new();
        let mut places = Vec::new();
        for _ in 0..n {
            let s = skus.swap_remove(self.rng.random_range(0..skus.len()));
            let l = self.rng.random_range(0..LOCS.len());
            let q = self.rng.random_range(1..=3);
            lines.push(json!({"sku": sku(s), "location": LOCS[l], "quantity": q}));
            places.push(((s, l), q));
        }
        (Value::Array(lines), places)
    }

    fn stock_changes(&mut self, steps: usize) -> Vec<Step> {
        (0..steps)
            .map(|_| {
                let n = self.rng.random_range(1..=3);
                // Non-zero deltas (zero is refused), some negative.
                let changes: Vec<(Place, i64)> = (0..n)
                    .map(|_| {
                        let place = (self.rng.random_range(0..SKUS), self.rng.random_range(0..LOCS.len()));
                        let sign = if self.rng.random_bool(0.3) { -1 } else { 1 };
                        (place, sign * self.rng.random_range(1i64..=9))
                    })
                    .collect();
                let body: Vec<Value> =
                    changes.iter().map(|((s, l), d)| json!({"sku": sku(*s), "location": LOCS[*l], "op": "adjust", "delta": d})).collect();
                self.step(format!("/v1/brands/{BRAND}/stock/changes"), json!({ "changes": body }), vec![Effect::OnHand(changes)])
            })
            .collect()
    }

    /// Creates a reservation; returns its id, its steps and what it holds.
    fn reservation(&mut self) -> (String, Step, Vec<(Place, i64)>) {
        let id = self.next("R");
        let (lines, held) = self.lines(2);
        let body = json!({"id": id, "channel": "zozotown", "ttl_seconds": 86400, "lines": lines});
        let effects = vec![Effect::Reserved(held.clone()), Effect::Status(format!("reservations/{id}"), "active")];
        let step = self.step(format!("/v1/brands/{BRAND}/reservations"), body, effects);
        (id, step, held)
    }

    fn reservations(&mut self, flows: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        for _ in 0..flows {
            let (id, create, held) = self.reservation();
            steps.push(create);
            if self.rng.random_bool(0.5) {
                let released: Vec<_> = held.iter().map(|(p, q)| (*p, -q)).collect();
                let path = format!("/v1/brands/{BRAND}/reservations/{id}/release");
                let effects = vec![Effect::Reserved(released), Effect::Status(format!("reservations/{id}"), "released")];
                steps.push(self.step(path, json!({}), effects));
            }
        }
        steps
    }

    fn shipments(&mut self, flows: usize) -> Vec<Step> {
        let ship_to = json!({"name": "山田 太郎", "postal_code": "100-0001", "prefecture": "東京都", "address": "千代田区1-1"});
        let mut steps = Vec::new();
        for _ in 0..flows {
            let id = self.next("SH");
            let object = format!("shipments/{id}");
            let path = format!("/v1/brands/{BRAND}/shipments");
            let held = if self.rng.random_bool(0.5) {
                let (lines, held) = self.lines(2);
                let body = json!({"id": id, "order_ref": id, "lines": lines, "ship_to": ship_to});
                let effects = vec![Effect::Reserved(held.clone()), Effect::Status(object.clone(), "accepted")];
                steps.push(self.step(path, body, effects));
                held
            } else {
                let (rid, create, held) = self.reservation();
                steps.push(create);
                let body = json!({"id": id, "order_ref": id, "reservation_id": rid, "ship_to": ship_to});
                // The shipment takes over the reservation's hold.
                let effects = vec![Effect::Status(object.clone(), "accepted"), Effect::Status(format!("reservations/{rid}"), "consumed")];
                steps.push(self.step(path, body, effects));
                held
            };
            let cancel_at = if self.rng.random_bool(0.3) { self.rng.random_range(0..3) } else { usize::MAX };
            let path = format!("/v1/brands/{BRAND}/shipments/{id}/status");
            for (i, status) in ["picking", "packed", "shipped", "delivered"].into_iter().enumerate() {
                if i == cancel_at {
                    let released: Vec<_> = held.iter().map(|(p, q)| (*p, -q)).collect();
                    let body = json!({"status": "cancelled"});
                    let effects = vec![Effect::Reserved(released), Effect::Status(object.clone(), "cancelled")];
                    steps.push(self.step(path.clone(), body, effects));
                    break;
                }
                let mut effects = vec![Effect::Status(object.clone(), status)];
                let mut body = json!({ "status": status });
                if status == "shipped" {
                    effects.push(Effect::Shipped(held.clone()));
                    body = json!({"status": status, "tracking_number": format!("TN-{id}"), "carrier": "yamato"});
                }
                steps.push(self.step(path.clone(), body, effects));
                if status == "shipped" && self.rng.random_bool(0.5) {
                    steps.extend(self.return_of(&id, &held));
                }
            }
        }
        steps
    }

    /// A return of a shipped shipment's first line: all of it asked for, inspected into
    /// one unit restocked, one unsellable (when there are two) and the rest missing, at a
    /// random location; then closed.
    fn return_of(&mut self, shipment: &str, held: &[(Place, i64)]) -> Vec<Step> {
        let id = self.next("RT");
        let object = format!("returns/{id}");
        let ((s, _), q) = held[0];
        let body = json!({"id": id, "shipment_id": shipment, "reason": "crash test", "lines": [{"sku": sku(s), "quantity": q}]});
        let mut steps = vec![self.step(format!("/v1/brands/{BRAND}/returns"), body, vec![Effect::Status(object.clone(), "requested")])];
        let l = self.rng.random_range(0..LOCS.len());
        let mut lines = vec![json!({"sku": sku(s), "quantity": 1, "disposition": "restock", "location": LOCS[l]})];
        let mut effects = vec![Effect::OnHand(vec![((s, l), 1)]), Effect::Status(object.clone(), "received")];
        if q >= 2 {
            lines.push(json!({"sku": sku(s), "quantity": 1, "disposition": "unsellable", "location": LOCS[l]}));
            effects.push(Effect::Unsellable(vec![((s, l), 1)]));
        }
        if q >= 3 {
            lines.push(json!({"sku": sku(s), "quantity": q - 2, "disposition": "missing"}));
        }
        steps.push(self.step(format!("/v1/brands/{BRAND}/returns/{id}/receipts"), json!({ "lines": lines }), effects));
        steps.push(self.step(format!("/v1/brands/{BRAND}/returns/{id}/close"), json!({}), vec![Effect::Status(object, "closed")]));
        steps
    }

    /// Transfers from one location to the other: shipped, received in part, closed
    /// (writing off the rest); or cancelled as a draft.
    fn transfers(&mut self, flows: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        for _ in 0..flows {
            let id = self.next("T");
            let object = format!("transfers/{id}");
            let from = self.rng.random_range(0..LOCS.len());
            let to = 1 - from;
            let n = self.rng.random_range(1..=2);
            let mut skus: Vec<usize> = (0..SKUS).collect();
            let lines: Vec<(usize, i64)> =
                (0..n).map(|_| (skus.swap_remove(self.rng.random_range(0..skus.len())), self.rng.random_range(2i64..=6))).collect();
            let body = json!({"id": id, "origin": LOCS[from], "destination": LOCS[to],
                              "lines": lines.iter().map(|(s, q)| json!({"sku": sku(*s), "quantity": q})).collect::<Vec<_>>()});
            steps.push(self.step(format!("/v1/brands/{BRAND}/transfers"), body, vec![Effect::Status(object.clone(), "draft")]));
            let path = |what: &str| format!("/v1/brands/{BRAND}/transfers/{id}/{what}");
            if self.rng.random_bool(0.2) {
                steps.push(self.step(path("cancel"), json!({}), vec![Effect::Status(object, "cancelled")]));
                continue;
            }
            let out: Vec<(Place, i64)> = lines.iter().map(|(s, q)| ((*s, from), -q)).collect();
            let coming: Vec<(Place, i64)> = lines.iter().map(|(s, q)| ((*s, to), *q)).collect();
            let effects = vec![Effect::OnHand(out), Effect::InTransit(coming), Effect::Status(object.clone(), "shipped")];
            steps.push(self.step(path("ship"), json!({}), effects));
            // One unit of each line never arrives.
            let got: Vec<(Place, i64)> = lines.iter().map(|(s, q)| ((*s, to), q - 1)).collect();
            let body = json!({"lines": lines.iter().map(|(s, q)| json!({"sku": sku(*s), "quantity": q - 1})).collect::<Vec<_>>()});
            let effects = vec![
                Effect::OnHand(got.clone()),
                Effect::InTransit(got.iter().map(|(p, q)| (*p, -q)).collect()),
                Effect::Status(object.clone(), "receiving"),
            ];
            steps.push(self.step(path("receipts"), body, effects));
            let lost: Vec<(Place, i64)> = lines.iter().map(|(s, _)| ((*s, to), -1)).collect();
            steps.push(self.step(path("close"), json!({}), vec![Effect::InTransit(lost), Effect::Status(object, "closed")]));
        }
        steps
    }

    fn import(&mut self) -> Vec<Step> {
        let mut csv = String::from("sku,location,delta\n");
        let mut rows = Vec::with_capacity(IMPORT_ROWS);
        for _ in 0..IMPORT_ROWS {
            let (s, l) = (self.rng.random_range(0..SKUS), self.rng.random_range(0..LOCS.len()));
            let d = self.rng.random_range(1..=9);
            csv.push_str(&format!("{},{},{d}\n", sku(s), LOCS[l]));
            rows.push(((s, l), d));
        }
        let key = self.next("imp");
        let path = format!("/v1/brands/{BRAND}/imports?kind=stock");
        vec![Step { path, key, body: Body::Csv(csv), admin: false, effects: vec![Effect::OnHand(rows)] }]
    }

    fn snapshots(&mut self, n: usize) -> Vec<Step> {
        (0..n)
            .map(|_| Step {
                path: "/v1/admin/snapshots".into(),
                key: self.next("snap"),
                body: Body::Json(json!({})),
                admin: true,
                effects: vec![Effect::None],
            })
            .collect()
    }
}

/// The model: `(on_hand, reserved)`, `unsellable` and `in_transit` per place, and the
/// status of every object.
#[derive(Default)]
struct Model {
    levels: HashMap<Place, (i64, i64)>,
    unsellable: HashMap<Place, i64>,
    in_transit: HashMap<Place, i64>,
    statuses: HashMap<String, &'static str>,
    /// Objects whose status moved this round (the ones checked after it).
    moved: HashSet<String>,
}

impl Model {
    fn apply(&mut self, step: &Step) {
        for effect in &step.effects {
            match effect {
                Effect::OnHand(moves) => moves.iter().for_each(|(p, d)| self.levels.entry(*p).or_default().0 += d),
                Effect::Reserved(moves) => moves.iter().for_each(|(p, d)| self.levels.entry(*p).or_default().1 += d),
                Effect::Shipped(moves) => moves.iter().for_each(|(p, q)| {
                    let level = self.levels.entry(*p).or_default();
                    level.0 -= q;
                    level.1 -= q;
                }),
                Effect::Unsellable(moves) => moves.iter().for_each(|(p, d)| *self.unsellable.entry(*p).or_default() += d),
                Effect::InTransit(moves) => moves.iter().for_each(|(p, d)| *self.in_transit.entry(*p).or_default() += d),
                Effect::Status(object, status) => {
                    self.statuses.insert(object.clone(), status);
                    self.moved.insert(object.clone());
                }
                Effect::None => {}
            }
        }
    }
}

#[test]
fn sigkill_under_mixed_load_loses_nothing_and_applies_nothing_twice() {
    let rounds: usize = std::env::var("ZAIKO_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("ZAIKO_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("mixed crash test: {rounds} rounds, seed {seed} (ZAIKO_CRASH_SEED to repeat)");
    let mut planner = Planner { rng: StdRng::seed_from_u64(seed), n: 0 };

    let args = [
        "--webhook-allow-private",
        "--webhook-retry-schedule=100ms,100ms,200ms,500ms,1s,1s,1s,1s,1s,1s",
        // Paced, in small chunks, so that kills land inside jobs.
        "--import-rows-per-second=2000",
        "--import-chunk-rows=50",
        // Small segments and frequent snapshots: segments are deleted under the load.
        "--wal-record-bytes-max=131072",
        "--wal-segment-bytes=266240",
        "--snapshot-every-records=400",
        "--snapshots-keep=2",
    ];
    let mut server = TestServer::spawn_with(Options { args: args.map(String::from).to_vec(), ..Options::default() });
    let skus: Vec<String> = (0..SKUS).map(sku).collect();
    let refs: Vec<&str> = skus.iter().map(String::as_str).collect();
    let token = server.setup_brand(BRAND, &LOCS, &refs);
    let receiver = Receiver::start();
    let hook = json!({"url": receiver.url, "events": ["stock.changed"]});
    server.post(&format!("/v1/brands/{BRAND}/webhooks"), &token, &hook).expect(201);
    let mut model = Model::default();
    for (s, name) in skus.iter().enumerate() {
        for (l, loc) in LOCS.iter().enumerate() {
            server.set_stock(BRAND, &token, name, loc, START);
            model.levels.insert((s, l), (START, 0));
        }
    }
    let (mut answered_total, mut retried_total) = (0usize, 0usize);

    for round in 0..rounds {
        let plans = [
            planner.stock_changes(40),
            planner.reservations(12),
            planner.shipments(6),
            planner.transfers(4),
            planner.import(),
            planner.snapshots(4),
        ];
        let total: usize = plans.iter().map(Vec::len).sum();
        let kill_after = planner.rng.random_range(1..total * 3 / 4);
        let outcomes = run_until_kill(&mut server, &plans, kill_after, |client, base, step| send(client, base, &token, step));
        server.start();

        // Retry what got no answer with the same key; a running server must answer.
        let client = reqwest::blocking::Client::new();
        let mut jobs = Vec::new();
        for Outcome { answered, unanswered } in outcomes {
            answered_total += answered.len();
            let retried = unanswered.map(|step| {
                let body = send(&client, &server.base, &token, &step)
                    .unwrap_or_else(|| panic!("retry of {} (key {}) got no answer from a running server", step.path, step.key));
                (step, body)
            });
            retried_total += usize::from(retried.is_some());
            for (step, body) in answered.iter().chain(&retried) {
                model.apply(step);
                if let Body::Csv(_) = step.body {
                    jobs.push(body["id"].as_str().expect("an import job id").to_string());
                }
            }
        }
        check_round(&server, &token, &model, &jobs, round, seed);
        model.moved.clear();
    }
    eprintln!("mixed crash test: {answered_total} steps answered before kills, {retried_total} retried after restarts");
    assert!(answered_total > 0);

    check_feed_and_webhooks(&server, &token, &receiver, seed);
    server.kill9();
    assert_wal_verifies(&server);
}

/// After a round: every import job done with all its rows, then every level and every
/// status as the model says.
fn check_round(server: &TestServer, token: &str, model: &Model, jobs: &[String], round: usize, seed: u64) {
    for id in jobs {
        let mut last = Value::Null;
        let done = wait_until(WAIT, || {
            last = server.get(&format!("/v1/brands/{BRAND}/imports/{id}"), token).expect(200);
            last["status"] == "done" || last["status"] == "failed"
        });
        assert!(done, "round {round}: import {id} did not finish: {last}");
        let counts = (last["status"].as_str(), last["rows_ok"].as_u64(), last["rows_failed"].as_u64());
        assert_eq!(counts, (Some("done"), Some(IMPORT_ROWS as u64), Some(0)), "round {round} (seed {seed}): {last}");
    }
    for s in 0..SKUS {
        let stock = server.stock(BRAND, token, &sku(s));
        for (l, loc) in LOCS.iter().enumerate() {
            let level = &stock["locations"][loc];
            let got = (level["on_hand"].as_i64().unwrap_or(0), level["reserved"].as_i64().unwrap_or(0));
            assert_eq!(got, model.levels[&(s, l)], "round {round} (seed {seed}): (on_hand, reserved) of {} at {loc}", sku(s));
            let got = (level["unsellable"].as_i64().unwrap_or(0), level["in_transit"].as_i64().unwrap_or(0));
            let want = (model.unsellable.get(&(s, l)).copied().unwrap_or(0), model.in_transit.get(&(s, l)).copied().unwrap_or(0));
            assert_eq!(got, want, "round {round} (seed {seed}): (unsellable, in_transit) of {} at {loc}", sku(s));
        }
    }
    for object in &model.moved {
        let want = model.statuses[object];
        let got = server.get(&format!("/v1/brands/{BRAND}/{object}"), token).expect(200);
        assert_eq!(got["status"], want, "round {round} (seed {seed}): {object}");
    }
}

/// The feed holds each SKU's stock versions exactly once, in order, up to its current
/// version; the webhook receiver got every one of those events, in order per SKU.
fn check_feed_and_webhooks(server: &TestServer, token: &str, receiver: &Receiver, seed: u64) {
    let mut versions: HashMap<String, Vec<u64>> = HashMap::new();
    let mut ids = HashSet::new();
    let mut after = "0".to_string();
    let mut last_seq = 0;
    loop {
        let page = server.get(&format!("/v1/brands/{BRAND}/events?after={after}&limit=1000"), token).expect(200);
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        for e in events {
            let seq = e["seq"].as_u64().unwrap();
            assert!(seq > last_seq, "feed seq {seq} after {last_seq}");
            last_seq = seq;
            if e["type"] == "stock.changed" {
                assert!(ids.insert(e["id"].as_str().unwrap().to_string()), "event {} twice in the feed", e["id"]);
                versions.entry(e["data"]["sku"].as_str().unwrap().to_string()).or_default().push(e["data"]["version"].as_u64().unwrap());
            }
        }
        after = page["next"].as_str().unwrap().to_string();
    }
    for s in 0..SKUS {
        let current = server.stock(BRAND, token, &sku(s))["version"].as_u64().unwrap();
        let want: Vec<u64> = (1..=current).collect();
        assert_eq!(versions.get(&sku(s)), Some(&want), "{}: every stock version once, in order (seed {seed})", sku(s));
    }
    let all_delivered = wait_until(WAIT, || {
        let got: HashSet<String> = first_arrivals(&receiver.accepted()).into_iter().map(|r| r.id).collect();
        ids.is_subset(&got)
    });
    assert!(all_delivered, "the webhook did not get every stock.changed event of the feed");
    let accepted = receiver.accepted();
    assert_in_order_per_sku(&accepted);
    let delivered: HashSet<String> = accepted.iter().map(|r| r.id.clone()).collect();
    assert_eq!(delivered, ids, "the webhook got only events of the feed");
}
