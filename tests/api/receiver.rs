//! A webhook receiver for tests: a small HTTP/1.1 server on a std `TcpListener` (one
//! thread per connection, keep-alive), recording every request and answering what the
//! test's policy says. Also the Standard Webhooks signature check, written here from
//! the spec rather than taken from the code under test.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    pub json: Value,
    /// The status the receiver answered.
    pub answered: u16,
}

/// What to answer: a status, after a delay.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub status: u16,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer { status, delay: Duration::ZERO }
    }
}

type Policy = Box<dyn FnMut(&Received) -> Answer + Send>;

struct State {
    got: Vec<Received>,
    policy: Policy,
}

pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    /// Starts a receiver that answers 200 to everything.
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State { got: Vec::new(), policy: Box::new(|_| Answer::status(200)) }));
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Receiver { url, state }
    }

    /// Replaces the answering policy.
    pub fn set_policy(&self, p: impl FnMut(&Received) -> Answer + Send + 'static) {
        self.state.lock().unwrap().policy = Box::new(p);
    }

    /// Everything received so far, in arrival order.
    pub fn got(&self) -> Vec<Received> {
        self.state.lock().unwrap().got.clone()
    }

    /// The requests answered with a 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.got().into_iter().filter(|r| (200..300).contains(&r.answered)).collect()
    }
}

fn serve(conn: TcpStream, state: &Arc<Mutex<State>>) {
    let mut writer = conn.try_clone().expect("clone");
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        let len: usize = header("content-length").parse().unwrap_or(0);
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body).to_string();
        let mut r = Received {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            json: serde_json::from_str(&body).unwrap_or(Value::Null),
            body,
            answered: 0,
        };
        let answer = (state.lock().unwrap().policy)(&r);
        std::thread::sleep(answer.delay);
        r.answered = answer.status;
        state.lock().unwrap().got.push(r);
        let reply = format!("HTTP/1.1 {} X\r\ncontent-length: 2\r\n\r\nok", answer.status);
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Checks a Standard Webhooks signature: `v1,` + base64(HMAC-SHA256(base64-decoded
/// secret without `whsec_`, "{id}.{timestamp}.{body}")).
pub fn signature_ok(secret: &str, r: &Received) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    r.signature.split(' ').any(|s| s == expected)
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The distinct events received, by webhook-id, in order of first arrival.
pub fn first_arrivals(got: &[Received]) -> Vec<Received> {
    let mut seen = HashSet::new();
    got.iter().filter(|r| seen.insert(r.id.clone())).cloned().collect()
}

/// Per SKU, the feed seqs of its events in order of first successful arrival must be
/// increasing: the receiver saw each SKU's changes in feed order.
pub fn assert_in_order_per_sku(accepted: &[Received]) {
    let mut last: HashMap<String, u64> = HashMap::new();
    for r in first_arrivals(accepted) {
        let sku = r.json["data"]["sku"].as_str().unwrap().to_string();
        let seq = r.json["seq"].as_u64().unwrap();
        let prev = last.insert(sku.clone(), seq).unwrap_or(0);
        assert!(seq > prev, "{sku}: seq {seq} arrived after {prev}");
    }
}
