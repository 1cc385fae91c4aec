//! Stock of one SKU at its locations, and the stock operations.
//!
//! Invariant (checked on every apply): `0 <= reserved <= on_hand`, `safety_stock >= 0`,
//! `incoming >= 0`, `unsellable >= 0`, `in_transit >= 0` at every location.
//!
//! A unit the location holds is either `on_hand` (sellable; `reserved` is the part of
//! it promised) or `unsellable` (damaged, held for inspection): never both, and an
//! unsellable unit is never available to any channel. `incoming` (an inbound notice)
//! and `in_transit` (a transfer shipped towards this location) are on their way and
//! not held yet.

use serde::{Deserialize, Serialize};

use super::error::{ErrorCode, FieldError, Rejection};
use super::text::check_text;
use super::Id;

/// Largest quantity or delta accepted on input; sums of many stay far from `i64::MAX`.
pub const QUANTITY_MAX: i64 = 1_000_000_000_000;

/// Quantities of one SKU at one location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Level {
    pub on_hand: i64,
    pub reserved: i64,
    pub safety_stock: i64,
    pub incoming: i64,
    /// Units held here that must not be sold (damaged, returned for inspection).
    pub unsellable: i64,
    /// Units of transfers shipped towards this location and not received yet.
    pub in_transit: i64,
}

impl Level {
    /// `max(0, on_hand - reserved - safety_stock)`.
    pub fn available(&self) -> i64 {
        (self.on_hand - self.reserved - self.safety_stock).max(0)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.reserved < 0 || self.reserved > self.on_hand {
            return Err(format!("reserved {} outside 0..=on_hand {}", self.reserved, self.on_hand));
        }
        if self.safety_stock < 0 || self.incoming < 0 || self.unsellable < 0 || self.in_transit < 0 {
            return Err(format!(
                "negative safety_stock {}, incoming {}, unsellable {} or in_transit {}",
                self.safety_stock, self.incoming, self.unsellable, self.in_transit
            ));
        }
        Ok(())
    }

    pub fn add(&self, other: &Level) -> Level {
        Level {
            on_hand: self.on_hand + other.on_hand,
            reserved: self.reserved + other.reserved,
            safety_stock: self.safety_stock + other.safety_stock,
            incoming: self.incoming + other.incoming,
            unsellable: self.unsellable + other.unsellable,
            in_transit: self.in_transit + other.in_transit,
        }
    }

    /// The units this location holds, sellable or not: what only receipts, shipments,
    /// transfers, return dispositions, write-offs and explicit adjustments change.
    pub fn held(&self) -> i64 {
        self.on_hand + self.unsellable
    }
}

/// Per-location levels of one SKU, sorted by location id. A boxed slice, not a `Vec`:
/// 8 bytes less in every SKU (with `Catalog::tags` that fits `SkuState` into the
/// allocator's 224-byte class instead of 256), and it serialises the same.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Levels(pub Box<[(Id, Level)]>);

impl Levels {
    pub fn get(&self, loc: &Id) -> Level {
        self.0.binary_search_by(|(l, _)| l.cmp(loc)).map(|i| self.0[i].1).unwrap_or_default()
    }

    pub fn set(&mut self, loc: &Id, level: Level) {
        match self.0.binary_search_by(|(l, _)| l.cmp(loc)) {
            Ok(i) => self.0[i].1 = level,
            Err(i) => {
                // A SKU's first stock at a location: rare next to the changes of levels.
                let mut v = std::mem::take(&mut self.0).into_vec();
                v.insert(i, (loc.clone(), level));
                self.0 = v.into_boxed_slice();
            }
        }
    }

    pub fn total(&self) -> Level {
        self.0.iter().fold(Level::default(), |acc, (_, l)| acc.add(l))
    }

    pub fn check(&self) -> Result<(), String> {
        for (loc, l) in &self.0 {
            l.check().map_err(|e| format!("at {loc}: {e}"))?;
        }
        if !self.0.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err("locations not sorted or repeated".into());
        }
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Id, Level)> {
        self.0.iter()
    }
}

/// The problem with a stock change's `reason`, if any: a short text (see
/// [`check_text`]).
pub fn check_reason(reason: Option<&str>) -> Option<FieldError> {
    reason.and_then(|r| check_text("reason", r))
}

/// One of the stock operations of `POST .../stock/changes`. Appended variants only
/// (bincode encodes a variant by its position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StockOp {
    Adjust {
        delta: i64,
    },
    Set {
        on_hand: i64,
    },
    SetSafetyStock {
        quantity: i64,
    },
    /// Moves `quantity` sellable units into `unsellable` (found damaged): never the
    /// reserved ones.
    MarkUnsellable {
        quantity: i64,
    },
    /// Moves `quantity` unsellable units back to `on_hand` (repaired, passed inspection).
    ReleaseUnsellable {
        quantity: i64,
    },
    /// Writes `quantity` unsellable units off: they leave the location.
    Dispose {
        quantity: i64,
    },
}

impl StockOp {
    pub fn name(&self) -> &'static str {
        match self {
            StockOp::Adjust { .. } => "adjust",
            StockOp::Set { .. } => "set",
            StockOp::SetSafetyStock { .. } => "set_safety_stock",
            StockOp::MarkUnsellable { .. } => "mark_unsellable",
            StockOp::ReleaseUnsellable { .. } => "release_unsellable",
            StockOp::Dispose { .. } => "dispose",
        }
    }

    /// The field of a stock change that carries the operation's quantity.
    pub fn field(&self) -> &'static str {
        match self {
            StockOp::Adjust { .. } => "delta",
            StockOp::Set { .. } => "on_hand",
            StockOp::SetSafetyStock { .. }
            | StockOp::MarkUnsellable { .. }
            | StockOp::ReleaseUnsellable { .. }
            | StockOp::Dispose { .. } => "quantity",
        }
    }

    /// The problem with the operation's quantity, if any, named by [`StockOp::field`]:
    /// a delta is non-zero and within ±[`QUANTITY_MAX`] (a no-op is a mistake), a
    /// level is 0..=[`QUANTITY_MAX`], a quantity moved in or out of `unsellable` is
    /// 1..=[`QUANTITY_MAX`].
    pub fn check(&self) -> Option<FieldError> {
        match *self {
            StockOp::MarkUnsellable { quantity: q } | StockOp::ReleaseUnsellable { quantity: q } | StockOp::Dispose { quantity: q }
                if !(1..=QUANTITY_MAX).contains(&q) =>
            {
                Some(FieldError::new(self.field(), format!("must be 1..={QUANTITY_MAX}")))
            }
            StockOp::Adjust { delta } if delta == 0 || delta.unsigned_abs() > QUANTITY_MAX as u64 => {
                Some(FieldError::new(self.field(), format!("must be non-zero and within ±{QUANTITY_MAX}")))
            }
            StockOp::Set { on_hand: q } | StockOp::SetSafetyStock { quantity: q } if !(0..=QUANTITY_MAX).contains(&q) => {
                Some(FieldError::new(self.field(), format!("must be 0..={QUANTITY_MAX}")))
            }
            _ => None,
        }
    }

    /// The level after the operation, or why it is refused.
    pub fn apply_to(&self, level: Level) -> Result<Level, Rejection> {
        let insufficient = |on_hand: i64| {
            Rejection::new(
                ErrorCode::InsufficientStock,
                if on_hand < 0 {
                    format!("on_hand would drop to {on_hand}, below zero")
                } else {
                    format!(
                        "on_hand would drop to {on_hand}, below the {} units reserved; release or ship reservations first",
                        level.reserved
                    )
                },
            )
        };
        match *self {
            StockOp::Adjust { delta } => {
                let on_hand = level
                    .on_hand
                    .checked_add(delta)
                    .filter(|v| (-QUANTITY_MAX * 1000..=QUANTITY_MAX * 1000).contains(v))
                    .ok_or_else(|| Rejection::new(ErrorCode::Unprocessable, "on_hand would overflow the accepted range"))?;
                if on_hand < 0 || on_hand < level.reserved {
                    return Err(insufficient(on_hand));
                }
                Ok(Level { on_hand, ..level })
            }
            StockOp::Set { on_hand } => {
                if on_hand < level.reserved {
                    return Err(insufficient(on_hand));
                }
                Ok(Level { on_hand, ..level })
            }
            StockOp::SetSafetyStock { quantity } => Ok(Level { safety_stock: quantity, ..level }),
            StockOp::MarkUnsellable { quantity } => {
                let on_hand = level.on_hand - quantity;
                if on_hand < 0 || on_hand < level.reserved {
                    return Err(insufficient(on_hand));
                }
                Ok(Level { on_hand, unsellable: level.unsellable + quantity, ..level })
            }
            StockOp::ReleaseUnsellable { quantity } | StockOp::Dispose { quantity } => {
                if quantity > level.unsellable {
                    return Err(Rejection::new(
                        ErrorCode::InsufficientStock,
                        format!("only {} units are unsellable here, fewer than {quantity}; read the stock and retry", level.unsellable),
                    ));
                }
                let unsellable = level.unsellable - quantity;
                match self {
                    StockOp::ReleaseUnsellable { .. } => Ok(Level { on_hand: level.on_hand + quantity, unsellable, ..level }),
                    _ => Ok(Level { unsellable, ..level }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lvl(on_hand: i64, reserved: i64, safety: i64) -> Level {
        Level { on_hand, reserved, safety_stock: safety, ..Level::default() }
    }

    #[test]
    fn unsellable_moves_keep_the_units_and_never_take_reserved_ones() {
        let l = StockOp::MarkUnsellable { quantity: 3 }.apply_to(lvl(10, 7, 0)).unwrap();
        assert_eq!((l.on_hand, l.unsellable, l.available(), l.held()), (7, 3, 0, 10));
        let r = StockOp::MarkUnsellable { quantity: 1 }.apply_to(l).unwrap_err();
        assert_eq!(r.code, ErrorCode::InsufficientStock, "the 7 left are reserved");
        let back = StockOp::ReleaseUnsellable { quantity: 2 }.apply_to(l).unwrap();
        assert_eq!((back.on_hand, back.unsellable, back.held()), (9, 1, 10));
        let gone = StockOp::Dispose { quantity: 1 }.apply_to(back).unwrap();
        assert_eq!((gone.on_hand, gone.unsellable, gone.held()), (9, 0, 9));
        let r = StockOp::Dispose { quantity: 1 }.apply_to(gone).unwrap_err();
        assert!(r.detail.contains("only 0 units are unsellable"), "{}", r.detail);
        assert_eq!(StockOp::Dispose { quantity: 0 }.check().unwrap().field, "quantity");
    }

    #[test]
    fn available_never_negative() {
        assert_eq!(lvl(10, 2, 1).available(), 7);
        assert_eq!(lvl(3, 2, 5).available(), 0);
    }

    #[test]
    fn adjust_cannot_drop_below_reserved_or_zero() {
        assert_eq!(StockOp::Adjust { delta: -8 }.apply_to(lvl(10, 2, 0)).unwrap().on_hand, 2);
        let r = StockOp::Adjust { delta: -9 }.apply_to(lvl(10, 2, 0)).unwrap_err();
        assert_eq!(r.code, ErrorCode::InsufficientStock);
        assert!(r.detail.contains("below the 2 units reserved"));
        let r = StockOp::Adjust { delta: -1 }.apply_to(lvl(0, 0, 0)).unwrap_err();
        assert!(r.detail.contains("below zero"));
    }

    #[test]
    fn set_below_reserved_is_refused_and_safety_stock_is_free() {
        assert!(StockOp::Set { on_hand: 1 }.apply_to(lvl(10, 2, 0)).is_err());
        assert_eq!(StockOp::Set { on_hand: 2 }.apply_to(lvl(10, 2, 0)).unwrap().on_hand, 2);
        assert_eq!(StockOp::SetSafetyStock { quantity: 50 }.apply_to(lvl(10, 2, 0)).unwrap().available(), 0);
    }

    #[test]
    fn overflow_is_refused_not_wrapped() {
        let r = StockOp::Adjust { delta: i64::MAX }.apply_to(lvl(10, 0, 0)).unwrap_err();
        assert_eq!(r.code, ErrorCode::Unprocessable);
    }

    #[test]
    fn quantities_are_checked_against_their_range_by_field() {
        for ok in
            [StockOp::Adjust { delta: -QUANTITY_MAX }, StockOp::Set { on_hand: 0 }, StockOp::SetSafetyStock { quantity: QUANTITY_MAX }]
        {
            assert_eq!(ok.check(), None, "{ok:?}");
        }
        let problem = |op: StockOp| op.check().map(|e| (e.field, e.detail));
        let delta = Some(("delta".to_string(), format!("must be non-zero and within ±{QUANTITY_MAX}")));
        assert_eq!(problem(StockOp::Adjust { delta: 0 }), delta);
        assert_eq!(problem(StockOp::Adjust { delta: i64::MIN }), delta);
        assert_eq!(problem(StockOp::Set { on_hand: -1 }), Some(("on_hand".into(), format!("must be 0..={QUANTITY_MAX}"))));
        assert_eq!(problem(StockOp::SetSafetyStock { quantity: QUANTITY_MAX + 1 }).unwrap().0, "quantity");
    }

    #[test]
    fn levels_stay_sorted() {
        let mut l = Levels::default();
        for loc in ["b", "a", "c", "a"] {
            l.set(&Id::parse(loc).unwrap(), lvl(1, 0, 0));
        }
        assert!(l.check().is_ok());
        assert_eq!(l.0.len(), 3);
        assert_eq!(l.total().on_hand, 3);
    }
}
