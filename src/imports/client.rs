//! `zaiko import`: uploads a file (streamed, with a progress bar), then follows the
//! job until it ends. Exit status: 0 when every row was applied, 1 when rows failed
//! or the job failed (the first errors are printed), 2 when the upload itself failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use actix_web::web::Bytes;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use tokio::io::AsyncReadExt;

/// How often the job is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
const READ_CHUNK_BYTES: usize = 256 << 10;
/// Row errors printed at the end.
const ERRORS_SHOWN: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Catalog,
    Stock,
    /// Named as the API's `kind` (`shipment-status` is accepted too).
    #[value(name = "shipment_status", alias = "shipment-status")]
    ShipmentStatus,
    /// Transfers (drafts), a row per line.
    Transfers,
    /// Returns (requested), a row per line.
    Returns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Csv,
    Ndjson,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Base URL of the server.
    #[arg(long, env = "ZAIKO_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A brand token (or the admin token).
    #[arg(long, env = "ZAIKO_TOKEN", hide_env_values = true)]
    pub token: String,
    #[arg(long)]
    pub brand: String,
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// File format [default: from the file's extension, .ndjson/.jsonl or CSV].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Sending the same file again with the same key gives the same job.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// The file to import.
    pub file: PathBuf,
}

#[derive(Debug, Deserialize)]
struct RowError {
    row: u64,
    code: String,
    detail: String,
}

#[derive(Debug, Deserialize)]
struct Job {
    id: String,
    status: String,
    rows_total: Option<u64>,
    rows_ok: u64,
    rows_failed: u64,
    #[serde(default)]
    errors: Vec<RowError>,
    detail: Option<String>,
}

fn format_of(args: &ImportArgs) -> FormatArg {
    args.format.unwrap_or_else(|| match args.file.extension().and_then(|e| e.to_str()) {
        Some("ndjson" | "jsonl") => FormatArg::Ndjson,
        _ => FormatArg::Csv,
    })
}

pub fn run(args: &ImportArgs) -> ExitCode {
    match actix_rt::System::new().block_on(run_async(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zaiko import: {e}");
            ExitCode::from(2)
        }
    }
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    pb
}

async fn run_async(args: &ImportArgs) -> Result<ExitCode, String> {
    let client = awc::Client::builder().timeout(Duration::from_secs(600)).finish();
    let job = upload(&client, args).await?;
    println!("import {} queued", job.id);
    let job = follow(&client, args, &job.id).await?;
    println!("import {} {}: {} rows applied, {} failed", job.id, job.status, job.rows_ok, job.rows_failed);
    if let Some(d) = &job.detail {
        println!("  {d}");
    }
    for e in job.errors.iter().take(ERRORS_SHOWN) {
        println!("  row {}: {} — {}", e.row, e.code, e.detail);
    }
    if job.rows_failed as usize > ERRORS_SHOWN.min(job.errors.len()) {
        println!("  … {} rows failed in all", job.rows_failed);
    }
    Ok(if job.status == "done" && job.rows_failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn upload(client: &awc::Client, args: &ImportArgs) -> Result<Job, String> {
    let file = tokio::fs::File::open(&args.file).await.map_err(|e| format!("{}: {e}", args.file.display()))?;
    let len = file.metadata().await.map_err(|e| e.to_string())?.len();
    let pb = bar(len, "upload {bar:40} {bytes}/{total_bytes} {bytes_per_sec}");
    let pb2 = pb.clone();
    let stream = futures_util::stream::unfold(file, move |mut f| {
        let pb = pb2.clone();
        async move {
            let mut buf = vec![0u8; READ_CHUNK_BYTES];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    pb.inc(n as u64);
                    Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        }
    });
    let (kind, content_type) = (
        args.kind.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default(),
        match format_of(args) {
            FormatArg::Csv => "text/csv",
            FormatArg::Ndjson => "application/x-ndjson",
        },
    );
    let url = format!("{}/v1/brands/{}/imports?kind={kind}", args.url.trim_end_matches('/'), args.brand);
    let mut req = client.post(url).bearer_auth(&args.token).insert_header(("content-type", content_type));
    if let Some(k) = &args.idempotency_key {
        req = req.insert_header(("idempotency-key", k.as_str()));
    }
    let mut resp = req.send_body(awc::body::SizedStream::new(len, stream)).await.map_err(|e| format!("upload failed: {e}"))?;
    pb.finish_and_clear();
    let body = resp.body().limit(1 << 20).await.map_err(|e| e.to_string())?;
    if resp.status().as_u16() != 202 {
        return Err(format!("the server refused the upload ({}): {}", resp.status(), String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| format!("unexpected answer: {e}"))
}

async fn follow(client: &awc::Client, args: &ImportArgs, id: &str) -> Result<Job, String> {
    let url = format!("{}/v1/brands/{}/imports/{id}", args.url.trim_end_matches('/'), args.brand);
    let pb = bar(0, "{spinner} {msg} {bar:40} {pos}/{len} rows {per_sec} eta {eta}");
    loop {
        let mut resp = client.get(&url).bearer_auth(&args.token).send().await.map_err(|e| format!("polling the job failed: {e}"))?;
        let body = resp.body().limit(1 << 20).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("polling the job failed ({}): {}", resp.status(), String::from_utf8_lossy(&body)));
        }
        let job: Job = serde_json::from_slice(&body).map_err(|e| format!("unexpected answer: {e}"))?;
        if let Some(t) = job.rows_total {
            pb.set_length(t);
        }
        pb.set_position(job.rows_ok + job.rows_failed);
        pb.set_message(job.status.clone());
        if job.status == "done" || job.status == "failed" {
            pb.finish_and_clear();
            return Ok(job);
        }
        actix_rt::time::sleep(POLL_INTERVAL).await;
    }
}
