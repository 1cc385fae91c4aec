//! The shapes `/openapi.json` names that are not request or view types of their own:
//! the problem body, the lists and small acknowledgements the handlers assemble
//! themselves, and the feed's event types. Schemas only — the server renders these
//! answers elsewhere. The handlers name them in their annotations, and `openapi.rs`
//! gathers the handlers; keeping the shapes here keeps the two from importing each
//! other.

use utoipa::ToSchema;

use crate::domain::error::{FieldError, Shortage};
use crate::domain::ErrorCode;

/// The type of a change-feed event (the `type` of each event, the `events` a webhook
/// subscribes to).
pub(super) struct FeedEventType;

impl utoipa::PartialSchema for FeedEventType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(crate::feed::render::FEED_TYPES))
            .description(Some("The type of a change-feed event."))
            .into()
    }
}

impl ToSchema for FeedEventType {}

/// An RFC 9457 problem: the body of every non-2xx answer.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: the server renders problems in `http::problem`
pub(super) struct Problem {
    /// `/problems/<code>`.
    #[schema(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    /// What went wrong and what to do next.
    detail: String,
    code: ErrorCode,
    /// With `invalid_request`: each offending field (`changes[3].delta`, `query.limit`, ...).
    errors: Option<Vec<FieldError>>,
    /// With `insufficient_stock`: what could not be covered.
    shortages: Option<Vec<Shortage>>,
    /// With a 503 from `/readyz`: each background worker and its state.
    workers: Option<std::collections::BTreeMap<String, crate::health::WorkerState>>,
    /// With `cursor_history_changed`: the cursor to follow the feed from once the
    /// stock has been read again.
    next: Option<String>,
}

// Answers the handlers assemble themselves (lists, small acknowledgements): their
// shapes, for the document only.

/// `GET /v1/brands`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct BrandList {
    brands: Vec<crate::domain::view::BrandView>,
}

/// `GET /v1/admin/cluster` (cluster mode).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ClusterStatus {
    /// The node that answered.
    node: String,
    /// Every brand partition (`"0"`..), then `"registry"`.
    partitions: Vec<ClusterPartition>,
    nodes: Vec<ClusterNode>,
}

/// One partition in `GET /v1/admin/cluster`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ClusterPartition {
    id: String,
    /// `None` while nobody holds its lease.
    owner: Option<ClusterOwner>,
    /// The nodes that follow its journal (hot standbys), best first.
    standbys: Vec<String>,
    /// The node it belongs on (the best-ranked live node that is not draining); an owner
    /// elsewhere hands it over there once that node follows it closely.
    preferred: Option<String>,
    /// The answering node's position in its journal: as owner the durable LSN, as a
    /// standby the last applied; otherwise 0.
    lsn: u64,
}

/// A partition's owner.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ClusterOwner {
    node: String,
    /// Where other nodes forward its requests.
    advertise: String,
    /// The lease epoch: increases with every change of owner.
    epoch: u64,
}

/// One node in `GET /v1/admin/cluster`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ClusterNode {
    id: String,
    advertise: String,
    partitions_owned: usize,
    /// Its heartbeat moved within the last lease.
    alive: bool,
    /// An operator is draining it (`PUT /v1/admin/cluster/nodes/{node}/drain`).
    draining: bool,
}

/// `GET /v1/locations`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct LocationList {
    locations: Vec<crate::domain::view::LocationView>,
}

/// `GET /v1/admin/snapshots`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct SnapshotList {
    snapshots: Vec<crate::snapshot::SnapshotInfo>,
}

/// `GET /v1/brands/{brand}/channels`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ChannelList {
    channels: Vec<crate::domain::view::ChannelView>,
}

/// `GET /v1/brands/{brand}/webhooks`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct WebhookList {
    webhooks: Vec<crate::domain::webhook::WebhookView>,
}

/// `GET .../webhooks/{id}/deliveries`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct DeliveryList {
    deliveries: Vec<crate::webhooks::store::DeliveryView>,
    /// Pass as `after` for the next page.
    next: String,
}

/// `POST .../webhooks/{id}/redrive`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct Redriven {
    requeued: u64,
}

/// `POST .../webhooks/{id}/replay`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct Replaying {
    /// `replaying`.
    status: String,
    after_seq: u64,
}

/// `GET /v1/brands/{brand}/events`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct EventPage {
    /// In commit order; each is one of the `FeedEvent` types.
    #[schema(value_type = Vec<Object>)]
    events: Vec<serde_json::Value>,
    /// Pass as `after` for the next page.
    next: String,
}

/// Why a SKU's stock changed: the `cause` of its `stock.changed` event, and the import
/// job whose row it was.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct HistoryCause {
    kind: super::event_types::StockCauseKind,
    /// `adjust`: the change asked for.
    #[schema(nullable = false)]
    delta: Option<i64>,
    /// `set`: the on hand asked for.
    #[schema(nullable = false)]
    on_hand: Option<i64>,
    /// `set_safety_stock`: the safety stock asked for.
    #[schema(nullable = false)]
    quantity: Option<i64>,
    /// The reason given with a stock change.
    #[schema(nullable = false)]
    reason: Option<String>,
    /// The reservation, shipment or inbound notice that moved the stock.
    #[schema(nullable = false)]
    id: Option<crate::domain::Id>,
    /// The import job the change was a row of.
    #[schema(nullable = false)]
    import: Option<crate::domain::Id>,
}

/// How the levels moved: the difference from the SKU's previous change.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct StockDelta {
    /// Only the locations whose levels changed.
    locations: std::collections::BTreeMap<String, crate::domain::view::LevelView>,
    total: crate::domain::view::LevelView,
}

/// One change of a SKU's stock.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct SkuChange {
    /// Its seq in the brand's change feed.
    seq: u64,
    /// The feed event's id.
    id: String,
    /// When it was committed (RFC 3339).
    at: String,
    sku: crate::domain::Id,
    /// The SKU's stock version after it.
    version: u64,
    /// Levels per location after it.
    locations: std::collections::BTreeMap<String, crate::domain::view::LevelView>,
    total: crate::domain::view::LevelView,
    /// Availability to each configured channel after it.
    channels: std::collections::BTreeMap<String, crate::domain::view::ChannelAvailableView>,
    cause: HistoryCause,
    /// Null when the SKU's previous change is no longer kept (retention, or a restore).
    delta: Option<StockDelta>,
}

/// `GET /v1/brands/{brand}/skus/{sku}/history`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct HistoryPage {
    sku: crate::domain::Id,
    /// In the page's order.
    changes: Vec<SkuChange>,
    /// Pass as `after` (with the same `order`) for the next page.
    next: String,
}
