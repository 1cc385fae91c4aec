//! Webhook delivery in cluster mode: a subscription is delivered by the node that owns
//! its brand's partition, and its delivered watermark — every event at or before it
//! delivered, dead, or not of the subscribed types — is kept in the `ZAIKO_WEBHOOKS`
//! bucket, so that the next owner goes on from there (`webhooks::Handover`).
//!
//! Between the last watermark written (at most `webhooks::worker::HANDOVER_INTERVAL`
//! old) and a failover, events are sent again by the new owner, with the same
//! `webhook-id` (event ids are the same on every node): at least once, as on one node
//! after a crash. The newest dead deliveries (`webhooks::DEAD_HANDED_MAX`) are handed
//! over the same way, so that the next owner lists and redrives them.

use async_nats::jetstream::kv;

use super::node::{Node, Route};
use crate::domain::BrandId;
use crate::webhooks::{DeadLetter, Handover, HandoverFuture};

/// The handover on the cluster's KV bucket.
pub struct KvHandover {
    pub node: Node,
    pub kv: kv::Store,
}

/// A webhook id as a KV key (`[-/_=.a-zA-Z0-9]`): hex of its bytes.
fn key(webhook: &str) -> String {
    keyed("wh.", webhook)
}

/// The key of a subscription's dead deliveries (JSON, newest first).
fn dead_key(webhook: &str) -> String {
    keyed("dl.", webhook)
}

fn keyed(prefix: &str, webhook: &str) -> String {
    let mut k = String::with_capacity(prefix.len() + 2 * webhook.len());
    k.push_str(prefix);
    for b in webhook.bytes() {
        k.push_str(&format!("{b:02x}"));
    }
    k
}

impl Handover for KvHandover {
    fn owns(&self, brand: &BrandId) -> bool {
        self.node.route(self.node.partition_of(brand.as_str())) == Route::Local
    }

    fn read(&self, webhook: &str) -> HandoverFuture<Option<u64>> {
        let (kv, key) = (self.kv.clone(), key(webhook));
        Box::pin(async move {
            match kv.get(&key).await.map_err(|e| e.to_string())? {
                None => Ok(None),
                Some(v) => std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .map(Some)
                    .ok_or_else(|| format!("the position under {key} is unreadable")),
            }
        })
    }

    fn write(&self, webhook: &str, through: u64) -> HandoverFuture<()> {
        let (kv, key) = (self.kv.clone(), key(webhook));
        Box::pin(async move { kv.put(&key, through.to_string().into()).await.map(|_| ()).map_err(|e| e.to_string()) })
    }

    fn read_dead(&self, webhook: &str) -> HandoverFuture<Vec<DeadLetter>> {
        let (kv, key) = (self.kv.clone(), dead_key(webhook));
        Box::pin(async move {
            match kv.get(&key).await.map_err(|e| e.to_string())? {
                None => Ok(Vec::new()),
                Some(v) => serde_json::from_slice(&v).map_err(|e| format!("the dead deliveries under {key} are unreadable: {e}")),
            }
        })
    }

    fn write_dead(&self, webhook: &str, dead: Vec<DeadLetter>) -> HandoverFuture<()> {
        let (kv, key) = (self.kv.clone(), dead_key(webhook));
        Box::pin(async move {
            let body = serde_json::to_vec(&dead).map_err(|e| e.to_string())?;
            kv.put(&key, body.into()).await.map(|_| ()).map_err(|e| e.to_string())
        })
    }

    fn forget(&self, webhook: &str) -> HandoverFuture<()> {
        let (kv, key, dead) = (self.kv.clone(), key(webhook), dead_key(webhook));
        Box::pin(async move {
            kv.delete(&key).await.map_err(|e| e.to_string())?;
            kv.delete(&dead).await.map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_kv_safe_and_distinct() {
        assert_eq!(super::key("wh_1"), "wh.77685f31");
        assert_ne!(super::key("a.b"), super::key("a_b"));
        assert_eq!(super::dead_key("wh_1"), "dl.77685f31");
    }
}
