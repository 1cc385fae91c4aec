//! `serve --demo`: loads the sample business of `data/demo/` (embedded in the binary)
//! into an empty data dir by replaying it through the server's own HTTP API, so the
//! demo goes through exactly the validation and durability a client's requests do.
//!
//! The files and their replay order are described in `data/README.md` and
//! `data/demo/manifest.json`: each NDJSON line is a request body plus the ids that go
//! into the path (and an `idempotency_key` for stock batches).

use std::path::Path;

use anyhow::{bail, Context as _};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Marker written once the demo data is loaded, so a restart does not load it again.
const LOADED_MARKER: &str = "demo-loaded";

/// The manifest and every file it names, embedded at build time.
const MANIFEST: &str = include_str!("../data/demo/manifest.json");
const FILES: &[(&str, &str)] = &[
    ("brands.ndjson", include_str!("../data/demo/brands.ndjson")),
    ("locations.ndjson", include_str!("../data/demo/locations.ndjson")),
    ("channels.ndjson", include_str!("../data/demo/channels.ndjson")),
    ("skus.ndjson", include_str!("../data/demo/skus.ndjson")),
    ("stock_changes.ndjson", include_str!("../data/demo/stock_changes.ndjson")),
    ("reservations.ndjson", include_str!("../data/demo/reservations.ndjson")),
    ("shipments.ndjson", include_str!("../data/demo/shipments.ndjson")),
    ("shipment_status.ndjson", include_str!("../data/demo/shipment_status.ndjson")),
];

/// The brand whose token `serve --demo` prints, to try the API with.
pub const FIRST_BRAND: &str = "komorebi";

/// Requests in flight while loading files whose lines are independent of each other.
const PARALLEL_REQUESTS: usize = 32;

#[derive(Deserialize)]
struct Manifest {
    files: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    file: String,
    method: String,
    path: String,
    #[serde(default)]
    path_ids: Vec<String>,
    #[serde(default)]
    headers: Map<String, Value>,
}

/// What `--demo` should do with this data dir.
pub enum Plan {
    /// Empty: load the demo after start.
    Load,
    /// Loaded by an earlier `--demo` start: just serve it.
    AlreadyLoaded,
}

/// Decides, before anything is written, whether `--demo` may run on `data_dir`.
pub fn plan(data_dir: &Path) -> anyhow::Result<Plan> {
    if data_dir.join(LOADED_MARKER).exists() {
        return Ok(Plan::AlreadyLoaded);
    }
    let has_journal = std::fs::read_dir(data_dir.join("wal")).map(|mut d| d.next().is_some()).unwrap_or(false);
    if has_journal {
        bail!(
            "--demo loads sample data into an empty data dir, but {} already holds a journal; use another --data-dir",
            data_dir.display()
        );
    }
    Ok(Plan::Load)
}

/// One replayable request.
struct Request {
    method: awc::http::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn build(step: &Step, line: &str) -> anyhow::Result<Request> {
    let mut obj: Map<String, Value> = serde_json::from_str(line).with_context(|| format!("bad line in {}", step.file))?;
    let mut path = step.path.clone();
    for id in &step.path_ids {
        let v = obj.remove(id).and_then(|v| v.as_str().map(str::to_string)).with_context(|| format!("{}: line lacks {id}", step.file))?;
        path = path.replace(&format!("{{{id}}}"), &v);
    }
    let mut headers = Vec::new();
    // `headers` maps a key of the line to the header it goes into.
    for (key, header) in &step.headers {
        let header = header.as_str().with_context(|| format!("{}: bad header mapping for {key}", step.file))?;
        if let Some(v) = obj.remove(key).and_then(|v| v.as_str().map(str::to_string)) {
            headers.push((header.to_string(), v));
        }
    }
    let method = step.method.parse().with_context(|| format!("bad method {}", step.method))?;
    Ok(Request { method, path, headers, body: serde_json::to_vec(&obj)? })
}

async fn send(client: &awc::Client, base: &str, admin: &str, req: Request) -> anyhow::Result<(u16, String)> {
    let mut rb = client.request(req.method, format!("{base}{}", req.path)).insert_header(("Authorization", format!("Bearer {admin}")));
    for (k, v) in req.headers {
        rb = rb.insert_header((k, v));
    }
    let mut resp = rb.insert_header(("Content-Type", "application/json")).send_body(req.body).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let body = resp.body().limit(1 << 20).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((resp.status().as_u16(), String::from_utf8_lossy(&body).into_owned()))
}

/// Replays every file of the manifest against the server at `base`. Returns the
/// number of requests sent.
pub async fn load(data_dir: &Path, base: &str, admin: &str) -> anyhow::Result<usize> {
    let manifest: Manifest = serde_json::from_str(MANIFEST).context("bad demo manifest")?;
    let client = awc::Client::builder().timeout(std::time::Duration::from_secs(60)).finish();
    let mut sent = 0;
    for step in &manifest.files {
        let content =
            FILES.iter().find(|(name, _)| *name == step.file).map(|(_, c)| *c).with_context(|| format!("{} is not embedded", step.file))?;
        let requests = content.lines().filter(|l| !l.trim().is_empty()).map(|l| build(step, l)).collect::<anyhow::Result<Vec<_>>>()?;
        // Catalog lines are independent; everything else replays in file order.
        let parallel = if step.file == "skus.ndjson" { PARALLEL_REQUESTS } else { 1 };
        let results: Vec<_> = stream::iter(requests).map(|r| send(&client, base, admin, r)).buffered(parallel).collect().await;
        let mut failed = 0;
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok((status, _)) if (200..300).contains(status) => {}
                Ok((404, body)) if i == 0 && body.contains("no route") => {
                    tracing::warn!(file = %step.file, "this server has no route for these demo requests; skipping the file");
                    failed = usize::MAX;
                    break;
                }
                Ok((status, body)) => {
                    failed += 1;
                    if failed <= 3 {
                        tracing::warn!(file = %step.file, line = i + 1, status, body = %body, "demo request refused");
                    }
                }
                Err(e) => bail!("demo load failed at {} line {}: {e}", step.file, i + 1),
            }
        }
        if failed != usize::MAX {
            if failed > 0 {
                bail!("{failed} requests of {} were refused; the demo data does not fit this server", step.file);
            }
            sent += results.len();
            tracing::info!(file = %step.file, requests = results.len(), "demo file loaded");
        }
    }
    std::fs::write(data_dir.join(LOADED_MARKER), b"loaded by zaiko serve --demo\n").context("cannot write the demo marker")?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_brand_whose_token_is_printed_is_in_the_demo_and_has_shirts() {
        let brand = format!(r#""id":"{}""#, super::FIRST_BRAND);
        assert!(super::FILES[0].1.lines().any(|l| l.contains(&brand)));
        let sku = format!(r#""brand":"{}""#, super::FIRST_BRAND);
        assert!(super::FILES[3].1.lines().any(|l| l.contains(&sku) && l.contains("シャツ")));
    }
}
