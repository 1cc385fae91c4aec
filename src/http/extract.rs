//! Turning requests into checked values: the caller's identity, path ids, query
//! strings, bounded JSON bodies with field-level errors, and the `Idempotency-Key`.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::problem::Problem;
use super::AppState;
use crate::actors::registry::Principal;
use crate::actors::IdemKey;
use crate::domain::idempotency::valid_key;
use crate::domain::{BrandId, FieldError, Id};

/// The authenticated caller.
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = Problem;
    type Future = Ready<Result<Caller, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        use actix_web::HttpMessage;
        let done = req.extensions().get::<Authenticated>().map(|a| a.0.clone());
        ready(done.unwrap_or_else(|| authenticate(req)).map(Caller))
    }
}

/// The result of authenticating a request, computed once by the rate-limit middleware
/// and kept in the request's extensions.
#[derive(Clone)]
pub struct Authenticated(pub Result<Principal, Problem>);

pub fn authenticate(req: &HttpRequest) -> Result<Principal, Problem> {
    let state = req.app_data::<web::Data<AppState>>().expect("AppState is registered");
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(Problem::unauthorized)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(Problem::unauthorized)?;
    state.auth.load().check(token).ok_or_else(Problem::unauthorized)
}

/// What a route needs the caller to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), Problem> {
        match self.0 {
            Principal::Admin => Ok(()),
            _ => Err(Problem::forbidden("this needs the admin token")),
        }
    }

    /// Admin or viewer: reads across all brands.
    pub fn require_global_read(&self) -> Result<(), Problem> {
        match self.0 {
            Principal::Admin | Principal::Viewer => Ok(()),
            Principal::Brand(_) => Err(Problem::forbidden("a brand token sees only its own brand")),
        }
    }

    /// Access to one brand's resources: the brand's own token, the admin, or a viewer
    /// for reads. Another brand's token is refused whether or not the brand exists.
    pub fn require_brand(&self, brand: &BrandId, access: Access) -> Result<(), Problem> {
        match (&self.0, access) {
            (Principal::Admin, _) => Ok(()),
            (Principal::Brand(b), _) if b == brand => Ok(()),
            (Principal::Brand(_), _) => Err(Problem::forbidden("this token belongs to another brand")),
            (Principal::Viewer, Access::Read) => Ok(()),
            (Principal::Viewer, Access::Write) => Err(Problem::forbidden("a viewer token is read-only")),
        }
    }
}

impl Caller {
    /// The brand of a path, checked, and the caller's right to `access` it.
    pub fn brand(&self, raw: &str, access: Access) -> Result<BrandId, Problem> {
        let brand = brand_id(raw)?;
        self.require_brand(&brand, access)?;
        Ok(brand)
    }
}

/// Checks the lines of a request (the rule is the domain's, which imports share).
pub use crate::domain::fulfilment::check_line_set;

/// The query string as `T`; a string that does not fit is a problem on `query`.
pub fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, Problem> {
    web::Query::<T>::from_query(req.query_string()).map(|q| q.into_inner()).map_err(|e| Problem::invalid("query", e.to_string()))
}

pub fn brand_id(raw: &str) -> Result<BrandId, Problem> {
    BrandId::parse(raw).map_err(|e| Problem::invalid("path.brand", e.to_string()))
}

pub fn id(field: &str, raw: &str) -> Result<Id, Problem> {
    Id::parse(raw).map_err(|e| Problem::invalid(format!("path.{field}"), e.to_string()))
}

/// Reads a request body of at most `limit` bytes. A declared or actual length past the
/// limit is refused with 413 without reading the rest into memory.
pub async fn read_body<S>(req: &HttpRequest, mut payload: S, limit: usize) -> Result<web::Bytes, Problem>
where
    S: futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let too_large = || {
        Problem::new(
            crate::domain::ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes; send fewer items per request"),
        )
    };
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()) {
        if len > limit {
            return Err(too_large());
        }
    }
    // A body that comes in one chunk (most do) is that chunk, not a copy of it.
    let mut first: Option<web::Bytes> = None;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Problem::invalid("body", format!("could not read the body: {e}")))?;
        if first.as_ref().map_or(0, web::Bytes::len) + body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        match first.take() {
            None if body.is_empty() => first = Some(chunk),
            Some(f) => {
                body.extend_from_slice(&f);
                body.extend_from_slice(&chunk);
            }
            None => body.extend_from_slice(&chunk),
        }
    }
    Ok(first.unwrap_or_else(|| body.freeze()))
}

/// Parses JSON into `T`, naming the offending field (`changes[3].delta`) on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // The plain parser first: tracking the path costs on every field, and only an
    // error needs it; a body that fails is parsed again to name the field.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // `?` is a key the parser never read (malformed JSON): name what holds it.
        let path = e.path().to_string();
        let path = path.trim_end_matches('?').trim_end_matches('.');
        let mut field = if path.is_empty() { "body".to_string() } else { path.to_string() };
        // A missing field is reported at its parent: name the field itself.
        let inner = e.inner().to_string();
        if let Some(name) = inner.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            field = if field == "body" { name.to_string() } else { format!("{field}.{name}") };
        }
        Problem::invalid_fields(vec![FieldError::new(field, inner)])
    })?;
    de.end().map_err(|e| Problem::invalid("body", e.to_string()))?;
    Ok(value)
}

/// A JSON body, read with the configured limit and parsed into `T`. The Content-Type
/// is not checked (curl sends form encoding by default); the body must parse as JSON. Also keeps the raw
/// bytes for the idempotency fingerprint.
pub struct JsonBody<T> {
    pub value: T,
    pub bytes: web::Bytes,
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = Problem;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let limit = req.app_data::<web::Data<AppState>>().expect("AppState is registered").limits.body_bytes_max;
            let bytes = read_body(&req, payload, limit).await?;
            let value = parse_json(&bytes)?;
            Ok(JsonBody { value, bytes })
        })
    }
}

/// The name of the `Idempotency-Key` header. A lookup by `&str` of a name outside the
/// standard ones copies it into a new `HeaderName` on every request.
pub const IDEMPOTENCY_KEY: actix_web::http::header::HeaderName = actix_web::http::header::HeaderName::from_static("idempotency-key");

/// The `Idempotency-Key` header, if present and well-formed.
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, Problem> {
    let Some(v) = req.headers().get(IDEMPOTENCY_KEY) else { return Ok(None) };
    match v.to_str() {
        Ok(k) if valid_key(k) => Ok(Some(k.to_string())),
        _ => Err(Problem::invalid("header.idempotency-key", "must be 1..=255 visible ASCII characters")),
    }
}

/// The key with a fingerprint of the request: method, path, and the body's JSON in a
/// canonical form (keys sorted, whitespace dropped), so a retry that re-serialises
/// the same content still matches.
pub fn idem_key(req: &HttpRequest, key: Option<String>, body: &[u8]) -> Option<IdemKey> {
    let key = key?;
    let canonical = super::canonical::canonical_json(body);
    let mut h = Sha256::new();
    h.update(req.method().as_str().as_bytes());
    h.update([0]);
    h.update(req.path().as_bytes());
    h.update([0]);
    h.update(canonical.as_deref().unwrap_or(body));
    Some(IdemKey { key, fingerprint: h.finalize().into() })
}

/// The brand and object id of a `/v1/brands/{brand}/<kind>/{id}...` path, the caller
/// allowed `access` to the brand.
pub fn brand_and_id(caller: &Caller, path: &(String, String), access: Access) -> Result<(BrandId, Id), Problem> {
    Ok((caller.brand(&path.0, access)?, id("id", &path.1)?))
}

/// The `lines` of a request that moves quantities of SKUs (inbounds, transfers and
/// their receipts): 1..=`LINES_MAX` lines, positive quantities, each SKU once.
pub fn qty_lines(lines: Vec<(Id, i64)>) -> Result<Vec<(Id, i64)>, Problem> {
    let mut errors = Vec::new();
    check_line_set("lines", lines.iter().map(|(sku, q)| (sku, *q)), crate::domain::fulfilment::LINES_MAX, &mut errors);
    if !errors.is_empty() {
        return Err(Problem::invalid_fields(errors));
    }
    Ok(lines)
}
