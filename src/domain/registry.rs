//! The global registry: locations and access tokens. Brands are not here: each brand
//! lives in its own partition (see `brand.rs`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::event::RegistryRecord;
use super::idempotency::IdempotencyStore;
use super::{BrandId, Id, Lsn, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocationKind {
    Warehouse,
    Store,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub id: Id,
    pub name: String,
    pub kind: LocationKind,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Admin,
    Brand(BrandId),
    Viewer,
}

/// A token as stored: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: Id,
    pub role: Role,
    pub secret_sha256: [u8; 32],
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryEvent {
    LocationUpserted(Location),
    TokenCreated(TokenRecord),
    TokenRevoked {
        id: Id,
        at: Timestamp,
    },
    /// A generated admin token (only its hash), when none was configured.
    AdminTokenGenerated {
        secret_sha256: [u8; 32],
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    pub locations: BTreeMap<Id, Location>,
    pub tokens: HashMap<Id, TokenRecord>,
    pub admin_sha256: Option<[u8; 32]>,
    pub idempotency: IdempotencyStore,
    pub last_lsn: Lsn,
}

impl Registry {
    pub fn apply(&mut self, lsn: Lsn, record: &RegistryRecord) -> Result<(), String> {
        if lsn <= self.last_lsn {
            return Err(format!("registry lsn {lsn} is not after {}", self.last_lsn));
        }
        for ev in &record.events {
            match ev {
                RegistryEvent::LocationUpserted(loc) => {
                    self.locations.insert(loc.id.clone(), loc.clone());
                }
                RegistryEvent::TokenCreated(t) => {
                    if self.tokens.insert(t.id.clone(), t.clone()).is_some() {
                        return Err(format!("token {} created twice", t.id));
                    }
                }
                RegistryEvent::TokenRevoked { id, at } => {
                    let t = self.tokens.get_mut(id).ok_or_else(|| format!("revoked token {id} does not exist"))?;
                    t.revoked_at = Some(*at);
                }
                RegistryEvent::AdminTokenGenerated { secret_sha256 } => self.admin_sha256 = Some(*secret_sha256),
            }
        }
        if let Some(w) = &record.idempotency {
            self.idempotency.insert(w, record.at, lsn);
        }
        self.last_lsn = lsn;
        Ok(())
    }
}
