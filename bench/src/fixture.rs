//! The data a benchmark runs against: locations, brands with their tokens, SKUs with
//! realistic Japanese catalog fields, and their initial stock; plus [`bulk`], the
//! concurrent driver that creates them (and that the capacity run reuses).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::client::{write_request, Conn};

/// What to create.
#[derive(Debug, Clone)]
pub struct FixtureSpec {
    /// Brand ids are `{prefix}-{index}`; SKU ids `S{index:07}` within each brand.
    pub brand_prefix: String,
    pub brands: usize,
    pub skus_per_brand: usize,
    pub locations: Vec<String>,
    /// on_hand set at every location of every SKU (0: no stock set).
    pub on_hand_initial: i64,
    /// Connections used to create it.
    pub concurrency: usize,
}

/// One brand of the fixture.
#[derive(Debug, Clone)]
pub struct BrandFx {
    pub id: String,
    pub token: String,
}

/// What was created. SKU `i` of brand `b` has the global index `b * skus_per_brand + i`;
/// stock slots are `global * locations.len() + location`.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub addr: String,
    pub admin_token: String,
    pub brands: Vec<BrandFx>,
    pub skus_per_brand: usize,
    pub locations: Vec<String>,
    /// Where the load's requests go (everything to `addr` unless routed).
    pub routes: Routes,
}

/// Where each request of the load goes: every one to the fixture's server, or — on a
/// cluster, with `--route-url` — each brand's to the node that owns the brand's
/// partition (a partitioned load: no request is forwarded) and the rest spread over
/// the nodes by connection.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Brand id → the address of the node owning its partition.
    pub owners: std::collections::HashMap<String, String>,
    /// Every node's address.
    pub nodes: Vec<String>,
}

impl Routes {
    /// The address for `request` (as built by `write_request`) sent on connection `conn`,
    /// or `None` for the fixture's server.
    pub fn pick(&self, request: &[u8], conn: usize) -> Option<&str> {
        if self.nodes.is_empty() {
            return None;
        }
        let path = request.splitn(3, |b| *b == b' ').nth(1).unwrap_or_default();
        let brand = path.strip_prefix(b"/v1/brands/").map(|rest| rest.split(|b| matches!(*b, b'/' | b'?')).next().unwrap_or_default());
        let owner = brand.and_then(|b| std::str::from_utf8(b).ok()).and_then(|b| self.owners.get(b));
        Some(owner.map_or_else(|| self.nodes[conn % self.nodes.len()].as_str(), String::as_str))
    }
}

impl Fixture {
    pub fn sku_id(i: usize) -> String {
        format!("S{i:07}")
    }

    pub fn total_skus(&self) -> usize {
        self.brands.len() * self.skus_per_brand
    }

    pub fn slots(&self) -> usize {
        self.total_skus() * self.locations.len()
    }

    /// The slot of (brand, sku, location).
    pub fn slot(&self, brand: usize, sku: usize, loc: usize) -> usize {
        (brand * self.skus_per_brand + sku) * self.locations.len() + loc
    }
}

/// One request/response on a fresh connection: for setup steps, not for load.
pub async fn call(addr: &str, method: &str, path: &str, token: &str, body: Option<&serde_json::Value>) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut conn = Conn::new(addr);
    let body = body.map(|b| serde_json::to_vec(b).expect("json serialises")).unwrap_or_default();
    let mut req = Vec::new();
    write_request(&mut req, method, path, addr, &[("Authorization", &format!("Bearer {token}"))], &body);
    let r = conn.send(&req).await.with_context(|| format!("{method} {path}"))?;
    Ok((r.status, r.body.to_vec()))
}

fn expect_status(what: &str, got: (u16, Vec<u8>), ok: &[u16]) -> anyhow::Result<Vec<u8>> {
    if !ok.contains(&got.0) {
        bail!("{what}: status {} ({})", got.0, String::from_utf8_lossy(&got.1));
    }
    Ok(got.1)
}

/// Creates the locations and brands (reusing any that exist) and a fresh token per
/// brand. SKUs and stock come after, through [`load_skus`] and [`set_stock`].
pub async fn create_brands(addr: &str, admin: &str, spec: &FixtureSpec) -> anyhow::Result<Fixture> {
    for loc in &spec.locations {
        let body = json!({"name": format!("倉庫 {loc}"), "kind": "warehouse"});
        expect_status(
            &format!("create location {loc}"),
            call(addr, "PUT", &format!("/v1/locations/{loc}"), admin, Some(&body)).await?,
            &[200, 201],
        )?;
    }
    let mut brands = Vec::new();
    for b in 0..spec.brands {
        let id = format!("{}-{b}", spec.brand_prefix);
        let body = json!({"id": id, "name": format!("ブランド{b}")});
        expect_status(&format!("create brand {id}"), call(addr, "POST", "/v1/brands", admin, Some(&body)).await?, &[201, 409])?;
        let token_body = expect_status(
            &format!("token for {id}"),
            call(addr, "POST", &format!("/v1/brands/{id}/tokens"), admin, Some(&json!({}))).await?,
            &[201],
        )?;
        let v: serde_json::Value = serde_json::from_slice(&token_body).context("token response")?;
        let token = v["token"].as_str().context("token response has no token")?.to_string();
        brands.push(BrandFx { id, token });
    }
    Ok(Fixture {
        addr: addr.to_string(),
        admin_token: admin.to_string(),
        brands,
        skus_per_brand: spec.skus_per_brand,
        locations: spec.locations.clone(),
        routes: Routes::default(),
    })
}

/// Routes the load over a cluster's nodes (`addr` first, then `others`): each brand to
/// the node that owns its partition, as the cluster view of `addr` shows it now.
pub async fn route_to_owners(fx: &mut Fixture, others: &[String]) -> anyhow::Result<()> {
    let body = expect_status("GET /v1/admin/cluster", call(&fx.addr, "GET", "/v1/admin/cluster", &fx.admin_token, None).await?, &[200])?;
    let view: serde_json::Value = serde_json::from_slice(&body).context("cluster view")?;
    let mut nodes = vec![fx.addr.clone()];
    nodes.extend(others.iter().map(|u| u.trim_end_matches('/').trim_start_matches("http://").to_string()));
    for b in &fx.brands {
        let owner = owner_in_view(&view, &b.id)?.trim_start_matches("http://").to_string();
        anyhow::ensure!(nodes.contains(&owner), "brand {} is owned by {owner}, which is not among --url and --route-url", b.id);
        fx.routes.owners.insert(b.id.clone(), owner);
    }
    fx.routes.nodes = nodes;
    Ok(())
}

/// The advertised URL (no trailing `/`) of the node that owns `brand`'s partition in a
/// cluster view (`GET /v1/admin/cluster`).
pub fn owner_in_view<'v>(view: &'v serde_json::Value, brand: &str) -> anyhow::Result<&'v str> {
    let partitions = view["partitions"].as_array().context("cluster view has no partitions")?;
    // The registry is a partition of its own, not a brand's.
    let brand_partitions = partitions.iter().filter(|p| p["id"] != "registry").count() as u32;
    anyhow::ensure!(brand_partitions > 0, "not a cluster node's view (no brand partitions)");
    let p = zaiko::cluster::engine::partition_of(brand, brand_partitions).to_string();
    let owner = partitions
        .iter()
        .find(|v| v["id"].as_str() == Some(p.as_str()))
        .and_then(|v| v["owner"]["advertise"].as_str())
        .with_context(|| format!("partition {p} of brand {brand} has no owner now"))?;
    Ok(owner.trim_end_matches('/'))
}

/// Creates every SKU with `PUT /v1/brands/{b}/skus/{sku}`.
pub async fn load_skus(fx: &Arc<Fixture>, concurrency: usize) -> anyhow::Result<Duration> {
    let make_fx = fx.clone();
    let make = move |i: usize, out: &mut Vec<u8>| {
        let (b, s) = (i / make_fx.skus_per_brand, i % make_fx.skus_per_brand);
        let brand = &make_fx.brands[b];
        let body = serde_json::to_vec(&catalog_json(i)).expect("json serialises");
        let auth = format!("Bearer {}", brand.token);
        write_request(
            out,
            "PUT",
            &format!("/v1/brands/{}/skus/{}", brand.id, Fixture::sku_id(s)),
            &make_fx.addr,
            &[("Authorization", &auth)],
            &body,
        );
    };
    let check = |_: usize, status: u16, body: &[u8]| match status {
        200 | 201 => Ok(()),
        _ => bail!("PUT sku: status {status} ({})", String::from_utf8_lossy(body)),
    };
    bulk(&fx.addr, concurrency, fx.total_skus(), "skus", make, check).await
}

/// Changes per `stock/changes` request while setting stock.
const SET_BATCH: usize = 1000;
/// Connections used to set stock: a 1,000-change batch keeps a shard busy for tens of
/// milliseconds, so more connections only add queueing (seconds at 128, enough to trip
/// actix-http's 5 s request timers).
const SET_CONNECTIONS_MAX: usize = 16;

/// Sets on_hand at every location of every SKU with `set` changes, 1,000 per request.
pub async fn set_stock(fx: &Arc<Fixture>, on_hand: i64, concurrency: usize, key_prefix: &str) -> anyhow::Result<Duration> {
    let per_brand = (fx.skus_per_brand * fx.locations.len()).div_ceil(SET_BATCH);
    let make_fx = fx.clone();
    let prefix = key_prefix.to_string();
    let make = move |i: usize, out: &mut Vec<u8>| {
        let (b, chunk) = (i / per_brand, i % per_brand);
        let brand = &make_fx.brands[b];
        let locs = make_fx.locations.len();
        let first = chunk * SET_BATCH;
        let last = (first + SET_BATCH).min(make_fx.skus_per_brand * locs);
        let changes: Vec<_> = (first..last)
            .map(|slot| json!({"sku": Fixture::sku_id(slot / locs), "location": make_fx.locations[slot % locs], "op": "set", "on_hand": on_hand}))
            .collect();
        let body = serde_json::to_vec(&json!({ "changes": changes })).expect("json serialises");
        let auth = format!("Bearer {}", brand.token);
        let key = format!("{prefix}-set-{b}-{chunk}");
        let headers = [("Authorization", auth.as_str()), ("Idempotency-Key", key.as_str())];
        write_request(out, "POST", &format!("/v1/brands/{}/stock/changes", brand.id), &make_fx.addr, &headers, &body);
    };
    let check = |_: usize, status: u16, body: &[u8]| {
        if status != 200 {
            bail!("set stock: status {status} ({})", String::from_utf8_lossy(body));
        }
        let flags = super::ledger::applied_flags(body)?;
        if flags.iter().any(|a| !a) {
            bail!("set stock: a change was rejected: {}", String::from_utf8_lossy(body));
        }
        Ok(())
    };
    bulk(&fx.addr, concurrency.min(SET_CONNECTIONS_MAX), per_brand * fx.brands.len(), "stock", make, check).await
}

/// Most times a request is resent after a 429/503 before the load gives up.
const RETRIES_MAX: u32 = 100;

/// Sends `count` requests over `concurrency` keep-alive connections. `make(i, out)`
/// writes request `i`; `check(i, status, body)` accepts its answer. 429 and 503 are
/// retried after a short pause, and so are 408 and connection errors (the request is
/// resent as is, so writes must carry an Idempotency-Key or be idempotent). Stops at
/// the first other error.
pub async fn bulk<M, C>(addr: &str, concurrency: usize, count: usize, label: &str, make: M, check: C) -> anyhow::Result<Duration>
where
    M: Fn(usize, &mut Vec<u8>) + Send + Sync + 'static,
    C: Fn(usize, u16, &[u8]) -> anyhow::Result<()> + Send + Sync + 'static,
{
    let started = Instant::now();
    let shared = Arc::new((make, check, AtomicUsize::new(0), AtomicBool::new(false)));
    let bar = progress(count as u64, label);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (shared, bar, addr) = (shared.clone(), bar.clone(), addr.to_string());
        tasks.push(tokio::spawn(async move {
            let (make, check, next, failed) = &*shared;
            let mut conn = Conn::new(&addr);
            let mut req = Vec::with_capacity(4096);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || failed.load(Ordering::Relaxed) {
                    return Ok::<(), anyhow::Error>(());
                }
                req.clear();
                make(i, &mut req);
                let result = send_retrying(&mut conn, &req).await.and_then(|(status, body)| check(i, status, &body));
                if let Err(e) = result {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e.context(format!("request {i}")));
                }
                bar.inc(1);
            }
        }));
    }
    for t in tasks {
        t.await.context("load task panicked")??;
    }
    bar.finish_and_clear();
    Ok(started.elapsed())
}

/// Connection errors (reconnected and resent) over every bulk load of this process.
pub static RESENT_AFTER_IO_ERROR: AtomicUsize = AtomicUsize::new(0);

/// Sends `req`, resending it after 429/503 and after connection errors. Resending is
/// safe because every bulk request is idempotent (PUT, GET, or keyed POST).
async fn send_retrying(conn: &mut Conn, req: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut last_error = None;
    for _ in 0..RETRIES_MAX {
        let before = conn.describe();
        let sent = Instant::now();
        match conn.send(req).await {
            // 408: actix-http's request-head timer fired; nothing was processed.
            Ok(r) if !matches!(r.status, 408 | 429 | 503) => return Ok((r.status, r.body.to_vec())),
            Ok(_) => {}
            Err(e) => {
                if RESENT_AFTER_IO_ERROR.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("bench: resending after a connection error {} ms after sending ({before}): {e}", sent.elapsed().as_millis());
                }
                last_error = Some(e);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match last_error {
        Some(e) => Err(anyhow::Error::new(e).context(format!("still failing after {RETRIES_MAX} tries"))),
        None => bail!("still 429/503 after {RETRIES_MAX} tries"),
    }
}

pub fn progress(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} {per_sec} eta {eta}").expect("valid template");
    bar.set_style(style.progress_chars("=> "));
    bar.set_prefix(label.to_string());
    bar
}

// Words for catalog names: (Japanese, tag). A SKU's fields are a pure function of its
// index, so reruns create identical catalogs.
const STYLES: [&str; 10] = [
    "オーバーサイズ",
    "ワイドシルエット",
    "リラックスフィット",
    "スリムフィット",
    "ヘビーウェイト",
    "ストレッチ",
    "ウォッシャブル",
    "撥水",
    "接触冷感",
    "裏起毛",
];
const MATERIALS: [(&str, &str); 8] = [
    ("コットン", "綿100%"),
    ("リネン混", "麻55% 綿45%"),
    ("ウール", "毛100%"),
    ("デニム", "綿98% ポリウレタン2%"),
    ("ナイロン", "ナイロン100%"),
    ("スウェット", "綿80% ポリエステル20%"),
    ("コーデュロイ", "綿100%"),
    ("カシミヤタッチ", "アクリル70% ナイロン30%"),
];
const ITEMS: [(&str, &str); 12] = [
    ("Tシャツ", "tops/t-shirts"),
    ("ロングスリーブTシャツ", "tops/t-shirts"),
    ("オックスフォードシャツ", "tops/shirts"),
    ("ジップパーカー", "tops/hoodies"),
    ("クルーネックニット", "tops/knit"),
    ("ワイドパンツ", "bottoms/pants"),
    ("テーパードパンツ", "bottoms/pants"),
    ("プリーツスカート", "bottoms/skirts"),
    ("ダウンジャケット", "outer/down"),
    ("トレンチコート", "outer/coats"),
    ("キャンバススニーカー", "shoes/sneakers"),
    ("トートバッグ", "bags/totes"),
];
const COLORS: [(&str, &str); 6] = [
    ("ネイビー", "navy"),
    ("ブラック", "black"),
    ("オフホワイト", "off-white"),
    ("ベージュ", "beige"),
    ("チャコール", "charcoal"),
    ("カーキ", "khaki"),
];
const SIZES: [&str; 5] = ["XS", "S", "M", "L", "XL"];
const SEASONS: [&str; 4] = ["2026SS", "2026AW", "定番", "アウトレット"];

/// The catalog body of SKU `i`: a product has every color in every size.
pub fn catalog_json(i: usize) -> serde_json::Value {
    let per_product = COLORS.len() * SIZES.len();
    let product = i / per_product;
    let (color, size) = (COLORS[(i / SIZES.len()) % COLORS.len()], SIZES[i % SIZES.len()]);
    let style = STYLES[product % STYLES.len()];
    let (material, composition) = MATERIALS[(product / 7) % MATERIALS.len()];
    let (item, category) = ITEMS[(product / 3) % ITEMS.len()];
    json!({
        "product_id": format!("P-{product:07}"),
        "name": format!("{style} {material} {item}"),
        "color": color.1,
        "size": size,
        "category": category,
        "price": 1990 + (product % 50) as i64 * 500,
        "tags": [color.0, SEASONS[product % SEASONS.len()]],
        "attributes": {"material": composition},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_bodies_are_japanese_and_vary_by_product() {
        let a = catalog_json(0);
        let b = catalog_json(1);
        assert_eq!(a["product_id"], b["product_id"], "sizes of one product share its id");
        assert_ne!(a["size"], b["size"]);
        let other = catalog_json(COLORS.len() * SIZES.len() * 5);
        assert_ne!(a["name"], other["name"]);
        let name = a["name"].as_str().unwrap();
        assert!(name.chars().any(|c| ('\u{30a0}'..='\u{30ff}').contains(&c)), "katakana in {name}");
        assert!((1..=500).contains(&name.chars().count()));
    }

    #[test]
    fn slots_are_dense() {
        let brands = (0..2).map(|b| BrandFx { id: format!("b{b}"), token: String::new() }).collect();
        let fx = Fixture {
            addr: String::new(),
            admin_token: String::new(),
            brands,
            skus_per_brand: 10,
            locations: vec!["a".into(), "b".into()],
            routes: Routes::default(),
        };
        assert_eq!(fx.slots(), 40);
        assert_eq!(fx.slot(0, 0, 0), 0);
        assert_eq!(fx.slot(1, 9, 1), 39);
        assert_eq!(Fixture::sku_id(42), "S0000042");
    }

    #[test]
    fn a_routed_request_goes_to_its_brands_owner_and_the_rest_round_robin() {
        let unrouted = Routes::default();
        assert_eq!(unrouted.pick(b"GET /v1/brands/b-1/skus HTTP/1.1\r\n", 0), None);
        let routes = Routes {
            owners: [("b-1".to_string(), "n2:2".to_string()), ("b-2".to_string(), "n3:3".to_string())].into(),
            nodes: vec!["n1:1".into(), "n2:2".into(), "n3:3".into()],
        };
        let mut out = Vec::new();
        crate::client::write_request(&mut out, "POST", "/v1/brands/b-1/stock/changes", "n1:1", &[], b"{}");
        assert_eq!(routes.pick(&out, 0), Some("n2:2"));
        assert_eq!(routes.pick(b"GET /v1/brands/b-2?x=1 HTTP/1.1\r\n", 0), Some("n3:3"));
        assert_eq!(routes.pick(b"GET /v1/brands/b-2 HTTP/1.1\r\n", 0), Some("n3:3"));
        // No brand, or one the fixture does not know: spread by connection.
        assert_eq!(routes.pick(b"GET /healthz HTTP/1.1\r\n", 4), Some("n2:2"));
        assert_eq!(routes.pick(b"GET /v1/brands/other/skus HTTP/1.1\r\n", 2), Some("n3:3"));
    }
}
