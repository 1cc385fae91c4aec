//! What the api tests' `TestServer`s share, single node (`tests/api/helpers.rs`) or
//! cluster (`tests/api_cluster/helpers.rs`): the answer type, and the convenience
//! requests every test uses, built on each server's own `request`.

use serde_json::Value;

/// A response: status, headers we care about, and the body as JSON (or Null).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub lsn: Option<u64>,
    pub content_type: String,
    pub retry_after: Option<String>,
}

impl Resp {
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        self.body
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

pub fn to_resp(r: reqwest::blocking::Response) -> Resp {
    let status = r.status().as_u16();
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let lsn = header("x-zaiko-lsn").and_then(|v| v.parse().ok());
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let bytes = r.bytes().expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp { status, body, lsn, content_type, retry_after }
}

/// A unique suffix for idempotency keys within a test run.
pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The convenience requests of a `TestServer` whose `request(method, path, token,
/// body, headers) -> Resp` exists; expanded inside its `impl`.
macro_rules! api_requests {
    () => {
        pub fn get(&self, path: &str, token: &str) -> Resp {
            self.request("GET", path, Some(token), None, &[])
        }

        pub fn post(&self, path: &str, token: &str, body: &Value) -> Resp {
            self.request("POST", path, Some(token), Some(body), &[])
        }

        pub fn post_key(&self, path: &str, token: &str, key: &str, body: &Value) -> Resp {
            self.request("POST", path, Some(token), Some(body), &[("Idempotency-Key", key)])
        }

        pub fn put(&self, path: &str, token: &str, body: &Value) -> Resp {
            self.request("PUT", path, Some(token), Some(body), &[])
        }

        pub fn delete(&self, path: &str, token: &str) -> Resp {
            self.request("DELETE", path, Some(token), None, &[])
        }

        /// Creates a brand, the given locations (admin) and SKUs, and returns a brand token.
        pub fn setup_brand(&self, brand: &str, locations: &[&str], skus: &[&str]) -> String {
            self.post("/v1/brands", ADMIN, &json!({"id": brand, "name": format!("Brand {brand}")})).expect(201);
            for loc in locations {
                let r = self.put(&format!("/v1/locations/{loc}"), ADMIN, &json!({"name": loc, "kind": "warehouse"}));
                assert!(r.status == 200 || r.status == 201, "{r:?}");
            }
            let token =
                self.post(&format!("/v1/brands/{brand}/tokens"), ADMIN, &json!({})).expect(201)["token"].as_str().unwrap().to_string();
            for sku in skus {
                self.put(&format!("/v1/brands/{brand}/skus/{sku}"), &token, &json!({"name": format!("商品 {sku}")})).expect(201);
            }
            token
        }

        /// Creates a brand and a token for it, with no other requests to the brand's paths
        /// (tests of rate limits count every request).
        pub fn setup_brand_raw(&self, brand: &str) -> String {
            self.post("/v1/brands", ADMIN, &json!({"id": brand, "name": brand})).expect(201);
            self.post(&format!("/v1/brands/{brand}/tokens"), ADMIN, &json!({})).expect(201)["token"].as_str().unwrap().to_string()
        }

        /// Sets on_hand of a SKU at a location.
        pub fn set_stock(&self, brand: &str, token: &str, sku: &str, loc: &str, on_hand: i64) {
            let key = format!("set-{sku}-{loc}-{on_hand}-{}", rand_suffix());
            let r = self.post_key(
                &format!("/v1/brands/{brand}/stock/changes"),
                token,
                &key,
                &json!({"changes": [{"sku": sku, "location": loc, "op": "set", "on_hand": on_hand}]}),
            );
            assert_eq!(r.body["results"][0]["status"], "applied", "{r:?}");
        }

        pub fn stock(&self, brand: &str, token: &str, sku: &str) -> Value {
            self.get(&format!("/v1/brands/{brand}/skus/{sku}/stock"), token).expect(200)
        }

        /// Every event of brand b1's feed, in order.
        pub fn whole_feed(&self, t: &str) -> Vec<Value> {
            let (mut all, mut after) = (Vec::new(), "0".to_string());
            loop {
                let page = self.get(&format!("/v1/brands/b1/events?after={after}&limit=1000"), t).expect(200);
                let evs = page["events"].as_array().unwrap();
                if evs.is_empty() {
                    return all;
                }
                all.extend(evs.iter().cloned());
                after = page["next"].as_str().unwrap().to_string();
            }
        }
    };
}
