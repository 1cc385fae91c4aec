//! The shipment search index under `<data-dir>/index/shipments`: its schema, its
//! query, and the handle `GET /v1/search/shipments` goes through.
//!
//! Same shape and the same machinery as SKU search — the collector (one pass for
//! total, facets and a page after a search-after cursor), cursors bound to their
//! request by a fingerprint, and the covered LSN of the one indexer — with a
//! shipment's own fields, filters and facets (`brand`, `status`).

pub mod query;
pub mod schema;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use tantivy::schema::Value;
use tantivy::{IndexReader, Searcher, TantivyDocument};

use super::collector::{After, Candidate, Found, SearchCollector, FACET_VALUES_MAX};
use super::search::{
    decode_cursor_for, encode_cursor_for, facet_values, fingerprint_of, in_partitions, merge, page, Coverage, CursorError, FacetValue,
    Keyed, Part, LIMIT_MAX,
};
use super::IndexError;
use crate::domain::Timestamp;
use query::ShipmentRequest;
use schema::{names, ShipmentFields};

/// The facets of a shipment search, in the order of [`ShipmentFacets`] fields.
pub const FACET_FIELDS: [&str; 2] = [names::BRAND, names::STATUS];

/// One shipment found. Never any of `ship_to`: the index does not hold it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ShipmentHit {
    pub id: String,
    pub brand: String,
    pub order_ref: Option<String>,
    pub status: String,
    pub channel: Option<String>,
    pub tracking_number: Option<String>,
    pub carrier: Option<String>,
    pub skus: Vec<String>,
    pub reservation_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The relevance score; `null` when the results are not ordered by relevance.
    pub score: Option<f32>,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq, utoipa::ToSchema)]
pub struct ShipmentFacets {
    pub brand: Vec<FacetValue>,
    pub status: Vec<FacetValue>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ShipmentSearchResult {
    pub total: u64,
    pub hits: Vec<ShipmentHit>,
    pub facets: ShipmentFacets,
    pub next_cursor: Option<String>,
}

/// The facets of a shipment search from the collector's counts.
fn facets_of(counts: Vec<Vec<(String, u64)>>) -> ShipmentFacets {
    let mut facets = counts.into_iter().map(facet_values);
    let brand = facets.next().unwrap_or_default();
    let status = facets.next().unwrap_or_default();
    ShipmentFacets { brand, status }
}

/// A shipment search's page from its parts gathered across a cluster.
pub fn merged(r: &ShipmentRequest, parts: Vec<Part<ShipmentHit>>) -> ShipmentSearchResult {
    let m = merge(parts, r.limit.clamp(1, LIMIT_MAX));
    ShipmentSearchResult { total: m.total, hits: m.hits, facets: facets_of(m.facets), next_cursor: m.next.map(|a| encode_cursor(r, &a)) }
}

/// A fingerprint of everything that decides the result order and set (not `limit`).
fn fingerprint(r: &ShipmentRequest) -> String {
    let mut statuses: Vec<&str> = r.statuses.iter().map(|s| s.as_str()).collect();
    statuses.sort_unstable();
    statuses.dedup();
    let time = |t: Option<Timestamp>| t.map_or_else(|| "\u{0}".to_string(), |t| t.millis().to_string());
    fingerprint_of([
        "shipments".to_string(),
        crate::index::query::terms(&r.q).join(" "),
        r.brand.as_ref().map_or_else(|| "\u{0}".to_string(), |b| b.to_string()),
        statuses.join(","),
        time(r.created_from),
        time(r.created_to),
        r.effective_sort().name().to_string(),
    ])
}

/// The cursor after `last` for request `r`.
pub fn encode_cursor(r: &ShipmentRequest, last: &After) -> String {
    encode_cursor_for(fingerprint(r), last)
}

/// Checks a cursor against the request it is sent with.
pub fn decode_cursor(r: &ShipmentRequest, raw: &str) -> Result<After, CursorError> {
    decode_cursor_for(&fingerprint(r), raw)
}

/// The search side of the shipment index. Cheap to share behind an `Arc`.
pub struct ShipmentIndex {
    reader: IndexReader,
    fields: ShipmentFields,
    coverage: Coverage,
}

impl ShipmentIndex {
    pub fn new(reader: IndexReader, fields: ShipmentFields, coverage: Coverage) -> ShipmentIndex {
        ShipmentIndex { reader, fields, coverage }
    }

    /// What the index covers, and waiting for more (`min_lsn`).
    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    /// Runs a search. Blocking (it reads the index): call it off the async executors.
    pub fn search(&self, r: &ShipmentRequest) -> Result<ShipmentSearchResult, IndexError> {
        let (searcher, scoring, Found { total, facets, top }) = self.run(r, None, FACET_VALUES_MAX)?;
        let (top, next_cursor) = page(top, r.limit.clamp(1, LIMIT_MAX), |last| encode_cursor(r, last));
        let hits = top.iter().map(|c| self.hit(&searcher, c, scoring)).collect::<Result<_, _>>()?;
        Ok(ShipmentSearchResult { total, hits, facets: facets_of(facets), next_cursor })
    }

    /// Cluster mode: this node's share of a gathered search, kept to the documents of
    /// `partitions` (see `SkuIndex::search_part`).
    pub fn search_part(&self, r: &ShipmentRequest, partitions: &[u32]) -> Result<Part<ShipmentHit>, IndexError> {
        let (searcher, scoring, Found { total, facets, top }) = self.run(r, Some(partitions), usize::MAX)?;
        let hits = top
            .iter()
            .map(|c| Ok(Keyed { primary: c.primary, uid: c.uid.clone(), hit: self.hit(&searcher, c, scoring)? }))
            .collect::<Result<_, IndexError>>()?;
        Ok(Part { total, hits, facets })
    }

    fn run(&self, r: &ShipmentRequest, partitions: Option<&[u32]>, facet_values_max: usize) -> Result<(Searcher, bool, Found), IndexError> {
        let searcher = self.reader.searcher();
        let mut query = query::build(&self.fields, r);
        if let Some(partitions) = partitions {
            query = in_partitions(query, self.fields.partition, partitions);
        }
        let limit = r.limit.clamp(1, LIMIT_MAX);
        let scoring = r.scoring();
        let collector = SearchCollector {
            order: r.order(),
            facets: &FACET_FIELDS,
            limit: limit + 1,
            after: r.after.clone(),
            scoring,
            facet_values_max,
        };
        let found = searcher.search(&*query, &collector)?;
        Ok((searcher, scoring, found))
    }

    fn hit(&self, searcher: &Searcher, c: &Candidate, scored: bool) -> Result<ShipmentHit, IndexError> {
        let doc: TantivyDocument = searcher.doc(c.address)?;
        let f = &self.fields;
        let text = |field| doc.get_first(field).and_then(|v| v.as_str().map(str::to_string));
        let time = |field| Timestamp(doc.get_first(field).and_then(|v| v.as_i64()).unwrap_or(0)).to_rfc3339();
        Ok(ShipmentHit {
            id: text(f.id).unwrap_or_default(),
            brand: text(f.brand).unwrap_or_default(),
            order_ref: text(f.order_ref),
            status: text(f.status).unwrap_or_default(),
            channel: text(f.channel),
            tracking_number: text(f.tracking_number),
            carrier: text(f.carrier),
            skus: doc.get_all(f.skus).filter_map(|v| v.as_str().map(str::to_string)).collect(),
            reservation_id: text(f.reservation_id),
            created_at: time(f.created),
            updated_at: time(f.updated),
            score: scored.then_some(c.score),
        })
    }
}
