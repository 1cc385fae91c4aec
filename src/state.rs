//! The whole state as one value — the registry and every brand partition — and the
//! fold of journal records into it. Recovery, snapshot building and snapshot tests all
//! use this one fold; the live actors apply the same `apply` functions per record.

use std::collections::HashMap;

use crate::domain::brand::{apply_brand_record, BrandState};
use crate::domain::event::{self, WalRecord};
use crate::domain::registry::Registry;
use crate::domain::BrandId;
use crate::journal::Lsn;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub registry: Registry,
    pub brands: HashMap<BrandId, BrandState>,
    /// The LSN of the newest record folded in.
    pub lsn: Lsn,
}

impl State {
    /// Folds one journal payload in. Errors name what does not fit.
    pub fn apply_payload(&mut self, lsn: Lsn, payload: &[u8]) -> Result<(), String> {
        self.apply_record(lsn, &event::decode(payload)?)
    }

    /// Folds one decoded journal record in. Errors name what does not fit.
    pub fn apply_record(&mut self, lsn: Lsn, record: &WalRecord) -> Result<(), String> {
        match record {
            WalRecord::Registry(r) => self.registry.apply(lsn, r)?,
            WalRecord::Brand(b) => apply_brand_record(&mut self.brands, lsn, b)?,
        }
        self.lsn = lsn;
        Ok(())
    }
}
