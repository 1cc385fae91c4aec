//! The shipment index schema and how one shipment becomes one document.
//!
//! The document is built from [`ShipmentSummary`], which has no `ship_to`: the
//! recipient's name, address and phone are not indexed, not stored, and cannot be
//! returned, because nothing here ever sees them.
//!
//! Any change here changes what is on disk: bump [`SHIPMENT_INDEX_FORMAT`], and a
//! server that finds an index of another format rebuilds it.

use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, SchemaBuilder, TextFieldIndexing, TextOptions, FAST, STORED, STRING,
};
use tantivy::TantivyDocument;

use crate::domain::view::ShipmentSummary;
use crate::domain::BrandId;
use crate::index::analyzer::{normalize, TOKENIZER_NAME};

/// Version of the shipment schema and its analysis; stored in every commit payload.
/// 2: the analyzer folds kana and keeps decimals whole (issue 22).
/// 3: `partition` (cluster mode, as in the SKU index).
/// 4: dictionaries not zstd-compressed (as the SKU index's format 7).
pub const SHIPMENT_INDEX_FORMAT: u32 = 4;

/// Fast-field names the collector reads by name.
pub mod names {
    pub use crate::index::schema::names::{BRAND, UID, UPDATED};
    pub const STATUS: &str = "status";
    pub const CREATED: &str = "created";
}

/// Every field of the schema.
#[derive(Debug, Clone, Copy)]
pub struct ShipmentFields {
    /// `brand/id`, unique: the delete term of an update and the tie-break of sorting.
    pub uid: Field,
    /// Brand id: filter, facet, stored.
    pub brand: Field,
    pub id: Field,
    pub order_ref: Field,
    /// Status name (`picking`): filter, facet, stored.
    pub status: Field,
    pub channel: Field,
    pub tracking_number: Field,
    pub carrier: Field,
    /// The SKUs of its lines, stored for the hits.
    pub skus: Field,
    pub reservation_id: Field,
    /// Shipment id, order ref and tracking number, normalised but whole: exact and
    /// prefix matches.
    pub keys_raw: Field,
    /// The SKUs, normalised but whole: exact and prefix matches (ranked below keys).
    pub skus_raw: Field,
    /// All of the above, analysed: a word inside an id (`20261128` in
    /// `EC-20261128-001`).
    pub ids_text: Field,
    /// Milliseconds since the epoch: filter, sort, stored.
    pub created: Field,
    pub updated: Field,
    /// Cluster mode: the brand's partition (see the SKU index's field).
    pub partition: Field,
}

/// The schema and its fields.
pub fn build() -> (Schema, ShipmentFields) {
    let mut b = SchemaBuilder::new();
    let time = || NumericOptions::default().set_fast().set_stored();
    let indexing = TextFieldIndexing::default().set_tokenizer(TOKENIZER_NAME).set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let fields = ShipmentFields {
        uid: b.add_text_field(names::UID, STRING | FAST),
        brand: b.add_text_field(names::BRAND, STRING | FAST | STORED),
        id: b.add_text_field("id", STORED),
        order_ref: b.add_text_field("order_ref", STORED),
        status: b.add_text_field(names::STATUS, STRING | FAST | STORED),
        channel: b.add_text_field("channel", STORED),
        tracking_number: b.add_text_field("tracking_number", STORED),
        carrier: b.add_text_field("carrier", STORED),
        skus: b.add_text_field("skus", STORED),
        reservation_id: b.add_text_field("reservation_id", STORED),
        keys_raw: b.add_text_field("keys_raw", STRING),
        skus_raw: b.add_text_field("skus_raw", STRING),
        ids_text: b.add_text_field("ids_text", TextOptions::default().set_indexing_options(indexing)),
        created: b.add_i64_field(names::CREATED, time()),
        updated: b.add_i64_field(names::UPDATED, time()),
        partition: b.add_u64_field("partition", tantivy::schema::INDEXED),
    };
    (b.build(), fields)
}

/// The unique id of a shipment in the index.
pub fn uid(brand: &BrandId, id: &str) -> String {
    format!("{brand}/{id}")
}

/// The document of one shipment: what the server indexes and what `zaiko index
/// rebuild` indexes, through this one function.
pub fn shipment_doc(f: &ShipmentFields, brand: &BrandId, s: &ShipmentSummary) -> TantivyDocument {
    let mut d = TantivyDocument::new();
    d.add_text(f.uid, uid(brand, s.id.as_str()));
    d.add_text(f.brand, brand.as_str());
    d.add_text(f.status, s.status.as_str());
    d.add_i64(f.created, s.created_at.millis());
    d.add_i64(f.updated, s.updated_at.millis());
    let keys = [(f.id, Some(s.id.as_str())), (f.order_ref, s.order_ref.as_deref()), (f.tracking_number, s.tracking_number.as_deref())];
    for (field, value) in keys {
        if let Some(v) = value {
            d.add_text(field, v);
            d.add_text(f.keys_raw, normalize(v));
            d.add_text(f.ids_text, v);
        }
    }
    for sku in &s.skus {
        d.add_text(f.skus, sku.as_str());
        d.add_text(f.skus_raw, normalize(sku.as_str()));
        d.add_text(f.ids_text, sku.as_str());
    }
    let rest = [
        (f.channel, s.channel.as_ref().map(|c| c.as_str())),
        (f.carrier, s.carrier.as_deref()),
        (f.reservation_id, s.reservation_id.as_ref().map(|r| r.as_str())),
    ];
    for (field, value) in rest {
        if let Some(v) = value {
            d.add_text(field, v);
        }
    }
    d
}
