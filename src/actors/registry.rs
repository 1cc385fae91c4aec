//! The registry actor: locations and tokens. After each applied record it publishes
//! read-only copies: the auth table for the HTTP layer and the location map for the
//! shards. A copy is published after the record is appended, so anything that uses
//! it is appended (and made durable) after it.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, Context as ActixContext, Handler, Message};
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{append_refused, fatal_apply, idempotent_replay, to_json, Context, Gated, IdemKey, Reply, ReplyTx};
use crate::domain::event::{self, RegistryRecord, WalRecord};
use crate::domain::idempotency::Status;
use crate::domain::registry::{Location, LocationKind, Registry, RegistryEvent, Role, TokenRecord};
use crate::domain::view::LocationView;
use crate::domain::{ErrorCode, Id, Rejection};
use crate::journal::LogRef;

/// A token in the form handed out: `zk_<id>_<secret>`.
pub const TOKEN_PREFIX: &str = "zk_";

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// 256 random bits, base64url without padding.
fn new_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
}

/// Creates a token: 64 random bits of id (public, for lookup and revocation) and 256
/// random bits of secret (only its hash is kept).
pub fn new_token() -> (Id, String, [u8; 32]) {
    use rand::RngCore;
    let mut id_bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut id_bytes);
    let id = Id::parse(&hex::encode(id_bytes)).expect("hex is a valid id");
    let secret = new_secret();
    let token = format!("{TOKEN_PREFIX}{id}_{secret}");
    (id, token, sha256(secret.as_bytes()))
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Brand(crate::domain::BrandId),
    Viewer,
}

/// The read-only copy of the tokens the HTTP layer checks requests against.
#[derive(Debug, Default)]
pub struct AuthTable {
    tokens: HashMap<Id, (Role, [u8; 32])>,
    admin_sha256: Option<[u8; 32]>,
}

impl AuthTable {
    fn build(reg: &Registry, configured_admin: Option<[u8; 32]>) -> AuthTable {
        let tokens =
            reg.tokens.values().filter(|t| t.revoked_at.is_none()).map(|t| (t.id.clone(), (t.role.clone(), t.secret_sha256))).collect();
        AuthTable { tokens, admin_sha256: configured_admin.or(reg.admin_sha256) }
    }

    /// Checks a bearer token. Lookup is by the token's public id; the secret's hash is
    /// compared in constant time.
    pub fn check(&self, token: &str) -> Option<Principal> {
        if let Some((id, secret)) = token.strip_prefix(TOKEN_PREFIX).and_then(|rest| rest.split_once('_')) {
            if let Some((role, hash)) = Id::parse(id).ok().and_then(|id| self.tokens.get(&id)) {
                if bool::from(sha256(secret.as_bytes()).ct_eq(hash)) {
                    return Some(match role {
                        Role::Admin => Principal::Admin,
                        Role::Brand(b) => Principal::Brand(b.clone()),
                        Role::Viewer => Principal::Viewer,
                    });
                }
                return None;
            }
        }
        let admin = self.admin_sha256?;
        // A generated admin token is `zk_admin_<secret>`; a configured one is any string.
        let candidates = [token.strip_prefix("zk_admin_").unwrap_or(token), token];
        candidates.iter().any(|c| bool::from(sha256(c.as_bytes()).ct_eq(&admin))).then_some(Principal::Admin)
    }
}

#[derive(Debug)]
pub enum RegistryCmd {
    PutLocation { id: Id, name: String, kind: LocationKind },
    ListLocations,
    CreateToken { role: Role },
    RevokeToken { id: Id },
}

pub struct RegistryMsg {
    pub cmd: RegistryCmd,
    pub idem: Option<IdemKey>,
    pub reply: ReplyTx,
}

impl Message for RegistryMsg {
    type Result = ();
}

/// Sent once after recovery: makes sure an admin token exists. Replies with a newly
/// generated token to print, if one was made.
pub struct EnsureAdmin {
    pub reply: tokio::sync::oneshot::Sender<Result<Option<String>, Rejection>>,
}

impl Message for EnsureAdmin {
    type Result = ();
}

pub struct RegistryActor {
    pub state: Registry,
    pub ctx: Context,
    /// Where registry records go; `None` in cluster mode while another node owns the
    /// registry (this node then follows it: `Followed`).
    pub log: Option<LogRef>,
    pub auth: Arc<ArcSwap<AuthTable>>,
    pub configured_admin: Option<[u8; 32]>,
    pub mailbox_capacity: usize,
}

impl Actor for RegistryActor {
    type Context = ActixContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        self.publish();
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TokenCreated {
    id: Id,
    /// The secret token, shown only in this answer.
    token: String,
    /// `brand` or `viewer`.
    #[schema(value_type = String)]
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    brand: Option<crate::domain::BrandId>,
}

impl RegistryActor {
    fn publish(&self) {
        self.auth.store(Arc::new(AuthTable::build(&self.state, self.configured_admin)));
        self.ctx.locations.store(Arc::new(self.state.locations.clone()));
    }

    fn commit(&mut self, events: Vec<RegistryEvent>, status: Status, body: Vec<u8>, idem: Option<IdemKey>) -> Gated {
        let at = self.ctx.clock.now();
        let idempotency = idem.map(|k| k.to_write(status, &body));
        let wal = WalRecord::Registry(RegistryRecord { at, idempotency, events });
        let Some(log) = self.log.clone() else {
            return Gated::refused(Rejection::new(
                ErrorCode::PartitionUnavailable,
                "the registry is changing owner; nothing was changed; retry shortly",
            ));
        };
        let lsn = match log.append(event::encode(&wal)) {
            Ok(lsn) => lsn,
            Err(e) => return Gated::refused(append_refused(e)),
        };
        let WalRecord::Registry(record) = wal else { unreachable!("built as a registry record above") };
        if let Err(e) = self.state.apply(lsn, &record) {
            fatal_apply("a registry record", lsn, &e);
        }
        self.publish();
        Gated::after(&log, lsn, Ok(Reply { status, body, lsn: Some(lsn) }))
    }

    /// An answer given once what it saw (`seen`) is durable. A follower's state was read
    /// from the replicated journal, so it is durable already.
    fn answer(&self, seen: crate::journal::Lsn, result: Result<Reply, Rejection>) -> Gated {
        match &self.log {
            Some(log) => Gated::after(log, seen, result),
            None => Gated { pending: None, result },
        }
    }

    fn execute(&mut self, cmd: RegistryCmd, idem: Option<IdemKey>) -> Gated {
        let seen = self.state.last_lsn;
        if !matches!(cmd, RegistryCmd::ListLocations) {
            if let Some(k) = &idem {
                if let Some(log) = &self.log {
                    if let Some(g) = idempotent_replay(self.state.idempotency.lookup(&k.key, &k.fingerprint), log) {
                        return g;
                    }
                }
            }
        }
        match cmd {
            RegistryCmd::ListLocations => {
                let locations: Vec<_> = self.state.locations.values().map(LocationView::from).collect();
                let body = to_json(&serde_json::json!({ "locations": locations }));
                self.answer(seen, Ok(Reply { status: Status::Done, body, lsn: None }))
            }
            RegistryCmd::PutLocation { id, name, kind } => {
                let now = self.ctx.clock.now();
                let (created_at, status) = match self.state.locations.get(&id) {
                    Some(l) => (l.created_at, Status::Done),
                    None => (now, Status::Created),
                };
                let loc = Location { id, name, kind, created_at, updated_at: now };
                let body = to_json(&LocationView::from(&loc));
                self.commit(vec![RegistryEvent::LocationUpserted(loc)], status, body, idem)
            }
            RegistryCmd::CreateToken { role } => {
                let (id, token, secret_sha256) = new_token();
                let (role_name, brand) = match &role {
                    Role::Admin => ("admin", None),
                    Role::Brand(b) => ("brand", Some(b.clone())),
                    Role::Viewer => ("viewer", None),
                };
                // The secret is in the response only: an idempotent replay of this request
                // must not hand it out again from the journal, so no key is stored.
                let body = to_json(&TokenCreated { id: id.clone(), token, role: role_name, brand });
                let record = TokenRecord { id, role, secret_sha256, created_at: self.ctx.clock.now(), revoked_at: None };
                let _ = idem;
                self.commit(vec![RegistryEvent::TokenCreated(record)], Status::Created, body, None)
            }
            RegistryCmd::RevokeToken { id } => match self.state.tokens.get(&id) {
                None => self.answer(seen, Err(Rejection::not_found(format!("token {id} does not exist")))),
                Some(t) if t.revoked_at.is_some() => self.answer(seen, Ok(Reply { status: Status::Removed, body: Vec::new(), lsn: None })),
                Some(_) => {
                    let at = self.ctx.clock.now();
                    self.commit(vec![RegistryEvent::TokenRevoked { id, at }], Status::Removed, Vec::new(), idem)
                }
            },
        }
    }
}

impl Handler<RegistryMsg> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: RegistryMsg, _ctx: &mut Self::Context) {
        let gated = self.execute(msg.cmd, msg.idem);
        let _ = msg.reply.send(gated);
    }
}

/// Cluster mode: this node now owns the registry, as its takeover's catch-up left it.
pub struct InstallRegistry {
    pub registry: Registry,
    pub log: LogRef,
}

impl Message for InstallRegistry {
    type Result = ();
}

/// Cluster mode: this node no longer owns the registry (it follows it again).
pub struct RemoveRegistry;

impl Message for RemoveRegistry {
    type Result = ();
}

/// Cluster mode: the registry as this node's follower of its journal has it, in the
/// slot the follower keeps filled with its newest (see `ActorHost`).
pub struct Followed(pub Arc<parking_lot::Mutex<Option<Registry>>>);

impl Message for Followed {
    type Result = ();
}

impl Handler<InstallRegistry> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: InstallRegistry, _ctx: &mut Self::Context) {
        self.state = msg.registry;
        self.log = Some(msg.log);
        self.publish();
    }
}

impl Handler<RemoveRegistry> for RegistryActor {
    type Result = ();

    fn handle(&mut self, _msg: RemoveRegistry, _ctx: &mut Self::Context) {
        self.log = None;
    }
}

impl Handler<Followed> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: Followed, _ctx: &mut Self::Context) {
        let Some(registry) = msg.0.lock().take() else { return };
        // The owner's own state is ahead of (or equal to) what its follower would read.
        if self.log.is_none() && registry.last_lsn >= self.state.last_lsn {
            self.state = registry;
            self.publish();
        }
    }
}

/// Answers once every message sent to the registry actor before it has been handled:
/// after a catch-up, the registry a request reads is the one caught up to.
pub struct Settle;

impl Message for Settle {
    type Result = ();
}

impl Handler<Settle> for RegistryActor {
    type Result = ();

    fn handle(&mut self, _msg: Settle, _ctx: &mut Self::Context) {}
}

impl Handler<EnsureAdmin> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: EnsureAdmin, _ctx: &mut Self::Context) {
        if self.configured_admin.is_some() || self.state.admin_sha256.is_some() {
            let _ = msg.reply.send(Ok(None));
            return;
        }
        let secret = new_secret();
        let admin_token = format!("zk_admin_{secret}");
        let g = self.commit(
            vec![RegistryEvent::AdminTokenGenerated { secret_sha256: sha256(secret.as_bytes()) }],
            Status::Done,
            Vec::new(),
            None,
        );
        let _ = msg.reply.send(g.result.map(|_| Some(admin_token)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BrandId, Timestamp};

    fn table_with(role: Role) -> (AuthTable, String, Id) {
        let (id, token, hash) = new_token();
        let mut reg = Registry::default();
        reg.tokens
            .insert(id.clone(), TokenRecord { id: id.clone(), role, secret_sha256: hash, created_at: Timestamp(0), revoked_at: None });
        (AuthTable::build(&reg, Some(sha256(b"admin-secret"))), token, id)
    }

    #[test]
    fn tokens_resolve_to_their_role_only_with_the_right_secret() {
        let b = BrandId::parse("b1").unwrap();
        let (t, token, _) = table_with(Role::Brand(b.clone()));
        assert_eq!(t.check(&token), Some(Principal::Brand(b)));
        let mut wrong = token.clone();
        wrong.pop();
        wrong.push('x');
        assert_eq!(t.check(&wrong), None);
        assert_eq!(t.check("admin-secret"), Some(Principal::Admin));
        assert_eq!(t.check("admin-secret "), None);
        assert_eq!(t.check(""), None);
    }

    #[test]
    fn revoked_tokens_are_not_in_the_table() {
        let (id, token, hash) = new_token();
        let mut reg = Registry::default();
        reg.tokens.insert(
            id.clone(),
            TokenRecord { id, role: Role::Viewer, secret_sha256: hash, created_at: Timestamp(0), revoked_at: Some(Timestamp(1)) },
        );
        assert_eq!(AuthTable::build(&reg, None).check(&token), None);
    }

    #[test]
    fn tokens_have_256_bit_secrets() {
        let (id, token, _) = new_token();
        let secret = token.strip_prefix(&format!("{TOKEN_PREFIX}{id}_")).unwrap();
        assert_eq!(secret.len(), 43, "{token}");
    }
}
