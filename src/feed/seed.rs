//! Feed checkpoints (cluster mode): where a partition's feed stands at one stream
//! sequence — the replay rule's state, each brand's last seq, the live webhook
//! subscriptions with the seq their delivery starts after — so that the partition's
//! journal can be purged below it and a node whose feed is behind the purge (a new
//! node, or one down longer than the retention) starts the partition's feed there with
//! the same seqs as every other node (`cluster::purge`).
//!
//! A checkpoint is folded from the journal by the same steps the feed takes
//! (`cluster::entry_batch`, then [`FeedSeed::apply`], which counts as
//! `Store::commit` does), so its seqs are the ones the feed store holds at that entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::store::{hook_start_seqs, Batch, HookChange, SourcePosition};
use crate::cluster::entry::Replay;
use crate::domain::webhook::Webhook;
use crate::domain::BrandId;
use crate::journal::Lsn;

/// A live subscription as the feed store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedWebhook {
    pub brand: BrandId,
    pub webhook: Webhook,
    pub created_lsn: Lsn,
    /// The brand's last seq when it was created: delivery starts after it.
    pub start_seq: u64,
}

/// A partition's feed at the entry `rule.last_seq` of its journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedSeed {
    pub partition: u32,
    /// The replay rule after the last entry folded in.
    pub rule: Replay,
    /// Each brand's last seq (every brand that has had an event).
    pub brands: BTreeMap<BrandId, u64>,
    /// The live subscriptions, by id.
    pub webhooks: BTreeMap<String, SeedWebhook>,
}

impl FeedSeed {
    /// The feed of a partition whose journal has not been read.
    pub fn new(partition: u32) -> FeedSeed {
        FeedSeed { partition, rule: Replay::new(), brands: BTreeMap::new(), webhooks: BTreeMap::new() }
    }

    pub fn position(&self) -> SourcePosition {
        SourcePosition::of(self.partition, &self.rule)
    }

    /// Counts a batch's events and follows its subscription changes, as the store's
    /// commit does.
    pub fn apply(&mut self, batch: &Batch) {
        let starts = hook_start_seqs(batch, |b| self.brands.get(b).copied().unwrap_or(0));
        for ev in &batch.events {
            *self.brands.entry(ev.brand.clone()).or_default() += 1;
        }
        for (hook, start_seq) in batch.hooks.iter().zip(starts) {
            match hook {
                HookChange::Created { brand, webhook, lsn, .. } => {
                    let seed = SeedWebhook { brand: brand.clone(), webhook: (**webhook).clone(), created_lsn: *lsn, start_seq };
                    self.webhooks.insert(webhook.id.to_string(), seed);
                }
                HookChange::Deleted { id } => {
                    self.webhooks.remove(id);
                }
            }
        }
    }
}
