//! Low-stock and stock-out alerts: a threshold per channel (a brand default for the
//! channel, and per-SKU overrides), and the band each SKU's availability to the channel
//! is in — `ok` (at or above the threshold), `low` (below it, above zero) or `out`
//! (zero). A change of band is an event (`stock.low`, `stock.out`, `stock.back`): once
//! per crossing, not per change.
//!
//! The band is state, changed only by applying those events, so a record that leaves
//! them out (see [`BrandState::stock_alerts`]) loses no crossing: the next change of
//! the SKU compares against the band last recorded and reports it then.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::brand::BrandState;
use super::event::Event;
use super::Id;

/// Per-SKU overrides one `PUT .../low-stock/{channel}` may set.
pub const THRESHOLD_SKUS_MAX: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Ok,
    Low,
    Out,
}

impl Band {
    pub fn of(available: i64, threshold: i64) -> Band {
        if available <= 0 {
            Band::Out
        } else if available < threshold {
            Band::Low
        } else {
            Band::Ok
        }
    }

    /// The feed type of entering this band.
    pub fn event_type(self) -> &'static str {
        match self {
            Band::Ok => "stock.back",
            Band::Low => "stock.low",
            Band::Out => "stock.out",
        }
    }
}

/// The thresholds of one channel: a default for every SKU, and overrides.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Thresholds {
    pub default: Option<i64>,
    pub skus: BTreeMap<Id, i64>,
}

impl Thresholds {
    pub fn of(&self, sku: &Id) -> Option<i64> {
        self.skus.get(sku).copied().or(self.default)
    }
}

impl BrandState {
    /// The band a SKU's availability to a channel was last recorded in (`ok` before any).
    pub fn band(&self, sku: &Id, channel: &Id) -> Band {
        self.bands.get(&(sku.clone(), channel.clone())).copied().unwrap_or(Band::Ok)
    }

    /// The alerts `events` cause: each `stock.changed` carries the SKU's availability
    /// to every configured channel; where a channel has a threshold for the SKU and the
    /// band changes (against the band recorded, or an earlier event of the same
    /// record), an alert follows. The shard appends these to every brand record.
    pub fn stock_alerts(&self, events: &[Event]) -> Vec<Event> {
        if self.thresholds.is_empty() {
            return Vec::new();
        }
        let mut seen: BTreeMap<(Id, Id), Band> = BTreeMap::new();
        let mut out = Vec::new();
        for e in events {
            let Event::StockChanged { sku, channels, .. } = e else { continue };
            for (channel, available) in channels {
                let Some(threshold) = self.thresholds.get(channel).and_then(|t| t.of(sku)) else { continue };
                let key = (sku.clone(), channel.clone());
                let before = seen.get(&key).copied().unwrap_or_else(|| self.band(sku, channel));
                let now = Band::of(*available, threshold);
                if now != before {
                    seen.insert(key, now);
                    out.push(Event::StockAlert { sku: sku.clone(), channel: channel.clone(), band: now, available: *available, threshold });
                }
            }
        }
        out
    }

    /// Forgets a deleted SKU's bands: a SKU made again under its id starts in `ok`, and
    /// the bands stay bounded by the SKUs there are (times the channels with thresholds).
    pub(super) fn forget_bands_of(&mut self, sku: &Id) {
        let channels: Vec<Id> = self.thresholds.keys().cloned().collect();
        for channel in channels {
            self.bands.remove(&(sku.clone(), channel));
        }
    }

    pub(super) fn apply_alert_event(&mut self, ev: &Event) -> Result<(), String> {
        match ev {
            Event::ThresholdsSet { channel, thresholds } => {
                if thresholds.default.is_none() && thresholds.skus.is_empty() {
                    self.thresholds.remove(channel);
                } else {
                    self.thresholds.insert(channel.clone(), thresholds.as_ref().clone());
                }
                // A SKU left without a threshold on the channel has no band there: no
                // change of it would ever update or remove one (rare: a scan is fine).
                self.bands.retain(|(sku, c), _| c != channel || thresholds.of(sku).is_some());
            }
            Event::StockAlert { sku, channel, band, .. } => {
                let key = (sku.clone(), channel.clone());
                if *band == Band::Ok {
                    self.bands.remove(&key);
                } else {
                    self.bands.insert(key, *band);
                }
            }
            _ => return Err(format!("not an alert event: {}", ev.type_name())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
