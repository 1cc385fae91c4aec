//! The SKU index schema and how one SKU becomes one document.
//!
//! Any change here or in the analyzer changes what is on disk: bump
//! [`INDEX_FORMAT`], and a server that finds an index of another format rebuilds it.

use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, SchemaBuilder, TextFieldIndexing, TextOptions, FAST, STORED, STRING,
};
use tantivy::TantivyDocument;

use super::analyzer::{keywords, normalize, GRAM_TOKENIZER_NAME, TOKENIZER_NAME};
use super::labels;
use crate::domain::brand::SkuState;
use crate::domain::{BrandId, Id};

/// Version of the schema and the analysis; stored in every commit payload.
/// 2: `incoming` and per-channel availability.
/// 3: [`ANY_CHANNEL`] marks the SKUs of a brand with channels.
/// 4: kana folds, decimals, word parts and glued affixes, `grams`, `category_text`,
///    `attr_text` (issue 22), `group`.
/// 5: `unsellable` and `in_transit` (issue 23).
/// 6: `partition` (cluster mode: a node's search keeps to the partitions it answers for).
/// 7: dictionaries of text fast fields no longer zstd-compressed (tantivy built without
///    `columnar-zstd-compression`, which cannot read the blocks format 6 compressed).
pub const INDEX_FORMAT: u32 = 7;

/// The [`Fields::chan_conf`] term of every SKU whose brand has configured channels
/// (`=` is not allowed in ids): a channel such a brand has not configured sells
/// nothing there (the brand refuses it as `unknown_channel`).
pub const ANY_CHANNEL: &str = "=";

/// The value of [`Fields::flags`] for a SKU with `available > 0`.
pub const FLAG_IN_STOCK: &str = "in_stock";

/// Fast-field names the collector reads by name.
pub mod names {
    pub const UID: &str = "uid";
    pub const BRAND: &str = "brand";
    pub const CATEGORY: &str = "category";
    pub const COLOR: &str = "color";
    pub const SIZE: &str = "size";
    pub const PRICE: &str = "price";
    pub const AVAILABLE: &str = "available";
    pub const UPDATED: &str = "updated";
    pub const GROUP: &str = "group";
}

/// Separates a channel id from its availability in [`Fields::chan_avail`]: `=` is not
/// allowed in ids.
pub const CHANNEL_VALUE_SEP: char = '=';

/// Every field of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// `brand/sku`, unique: the delete term of an update and the tie-break of sorting.
    pub uid: Field,
    /// Brand id: filter, facet, stored.
    pub brand: Field,
    pub sku: Field,
    pub product_id: Field,
    /// Analysed text fields that `q` searches.
    pub brand_name: Field,
    pub name: Field,
    pub tags: Field,
    /// SKU and product id, analysed (so `000759-bk` finds `b003-000759-BK-M`).
    pub ids_text: Field,
    /// SKU and product id, normalised but whole: exact and prefix matches.
    pub ids_raw: Field,
    /// Trigrams of the Latin and digit text of name, brand name, tags and ids:
    /// substrings (`shirt` in `sweatshirt`), ranked under whole words.
    pub grams: Field,
    /// The category, its ancestors and their display names ([`labels`]), as keywords
    /// ([`keywords`]: matched whole, one term lookup, as dense as these fields are).
    pub category_text: Field,
    /// The colour and its names ([`labels`]) and the size, as keywords.
    pub attr_text: Field,
    /// `brand/product_id`, or the uid for a SKU without a product: `group=product`.
    pub group: Field,
    pub color: Field,
    pub size: Field,
    /// The category as given: facet and stored.
    pub category: Field,
    /// The category and each of its ancestors (`tops`, `tops/t-shirts`): the filter.
    pub category_path: Field,
    /// Locations where the SKU has `available > 0`: the `location` filter.
    pub avail_locs: Field,
    /// [`FLAG_IN_STOCK`] when `available > 0`.
    pub flags: Field,
    pub price: Field,
    pub on_hand: Field,
    pub available: Field,
    /// Sum of `incoming` over the locations (stock on its way, not yet on hand).
    pub incoming: Field,
    /// Sum of `unsellable` over the locations (held, never for sale).
    pub unsellable: Field,
    /// Sum of `in_transit` over the locations (transfers shipped, not yet received).
    pub in_transit: Field,
    /// The brand's configured channels (as of the last time this SKU was indexed).
    pub chan_conf: Field,
    /// The configured channels with an availability above zero: the `channel` filter.
    pub chan_stock: Field,
    /// `channel=available` per configured channel, stored for the hits.
    pub chan_avail: Field,
    /// Last change of catalog or stock, milliseconds since the epoch.
    pub updated: Field,
    /// Cluster mode: the brand's partition (a single node leaves it out). A node's
    /// search keeps to the partitions it answers for, and a partition that leaves the
    /// node is deleted by this term.
    pub partition: Field,
}

fn analysed(stored: bool) -> TextOptions {
    analysed_by(TOKENIZER_NAME, stored)
}

fn analysed_by(tokenizer: &str, stored: bool) -> TextOptions {
    let indexing = TextFieldIndexing::default().set_tokenizer(tokenizer).set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let opts = TextOptions::default().set_indexing_options(indexing);
    if stored {
        opts.set_stored()
    } else {
        opts
    }
}

/// The schema and its fields.
pub fn build() -> (Schema, Fields) {
    let mut b = SchemaBuilder::new();
    let fast_i64 = || NumericOptions::default().set_fast();
    let fields = Fields {
        uid: b.add_text_field(names::UID, STRING | FAST),
        brand: b.add_text_field(names::BRAND, STRING | FAST | STORED),
        sku: b.add_text_field("sku", STORED),
        product_id: b.add_text_field("product_id", STORED),
        brand_name: b.add_text_field("brand_name", analysed(false)),
        name: b.add_text_field("name", analysed(true)),
        tags: b.add_text_field("tags", analysed(false)),
        ids_text: b.add_text_field("ids_text", analysed(false)),
        ids_raw: b.add_text_field("ids_raw", STRING),
        grams: b.add_text_field("grams", analysed_by(GRAM_TOKENIZER_NAME, false)),
        category_text: b.add_text_field("category_text", STRING),
        attr_text: b.add_text_field("attr_text", STRING),
        group: b.add_text_field(names::GROUP, STRING | FAST),
        color: b.add_text_field(names::COLOR, STRING | FAST | STORED),
        size: b.add_text_field(names::SIZE, STRING | FAST | STORED),
        category: b.add_text_field(names::CATEGORY, STRING | FAST | STORED),
        category_path: b.add_text_field("category_path", STRING),
        avail_locs: b.add_text_field("avail_locs", STRING),
        flags: b.add_text_field("flags", STRING),
        price: b.add_i64_field(names::PRICE, fast_i64().set_stored()),
        on_hand: b.add_i64_field("on_hand", NumericOptions::default().set_stored()),
        available: b.add_i64_field(names::AVAILABLE, fast_i64().set_stored()),
        incoming: b.add_i64_field("incoming", NumericOptions::default().set_stored()),
        unsellable: b.add_i64_field("unsellable", NumericOptions::default().set_stored()),
        in_transit: b.add_i64_field("in_transit", NumericOptions::default().set_stored()),
        chan_conf: b.add_text_field("chan_conf", STRING),
        chan_stock: b.add_text_field("chan_stock", STRING),
        chan_avail: b.add_text_field("chan_avail", STORED),
        updated: b.add_i64_field(names::UPDATED, fast_i64()),
        partition: b.add_u64_field("partition", tantivy::schema::INDEXED),
    };
    (b.build(), fields)
}

/// The unique id of a SKU in the index.
pub fn uid(brand: &BrandId, sku: &Id) -> String {
    format!("{brand}/{sku}")
}

/// `tops/t-shirts` → `tops`, `tops/t-shirts`.
fn category_paths(category: &str) -> impl Iterator<Item = &str> {
    category.match_indices('/').map(|(i, _)| &category[..i]).chain(std::iter::once(category))
}

/// The document of one SKU: what the server indexes, what `zaiko index rebuild` and
/// the benchmark index, all through this one function. `channels` is the SKU's
/// availability to each configured channel of its brand
/// ([`crate::domain::brand::BrandState::channel_view`]); a channel never configured is
/// not indexed (it sells what the SKU has available, see [`super::query`]).
pub fn sku_doc(f: &Fields, brand: &BrandId, brand_name: &str, sku: &Id, s: &SkuState, channels: &[(Id, i64)]) -> TantivyDocument {
    let c = &s.catalog;
    let mut d = TantivyDocument::new();
    let uid = uid(brand, sku);
    d.add_text(f.group, c.product_id.as_ref().map_or_else(|| uid.clone(), |p| format!("{brand}/{p}")));
    d.add_text(f.uid, uid);
    d.add_text(f.brand, brand.as_str());
    d.add_text(f.sku, sku.as_str());
    d.add_text(f.brand_name, brand_name);
    d.add_text(f.name, c.name.as_str());
    d.add_text(f.ids_text, sku.as_str());
    d.add_text(f.ids_raw, normalize(sku.as_str()));
    for text in [brand_name, c.name.as_str(), sku.as_str()] {
        d.add_text(f.grams, text);
    }
    if let Some(p) = &c.product_id {
        d.add_text(f.product_id, p.as_str());
        d.add_text(f.ids_text, p.as_str());
        d.add_text(f.ids_raw, normalize(p));
        d.add_text(f.grams, p.as_str());
    }
    for t in &c.tags {
        d.add_text(f.tags, t.as_str());
        d.add_text(f.grams, t.as_str());
    }
    if let Some(v) = &c.color {
        d.add_text(f.color, v.as_str());
        for k in labels::color_words(v).into_iter().flat_map(keywords) {
            d.add_text(f.attr_text, k);
        }
    }
    if let Some(v) = &c.size {
        d.add_text(f.size, v.as_str());
        for k in keywords(v) {
            d.add_text(f.attr_text, k);
        }
    }
    if let Some(cat) = &c.category {
        d.add_text(f.category, cat.as_str());
        for p in category_paths(cat) {
            d.add_text(f.category_path, p);
        }
        for k in labels::category_words(cat).into_iter().flat_map(keywords) {
            d.add_text(f.category_text, k);
        }
    }
    if let Some(p) = c.price {
        d.add_i64(f.price, p);
    }
    let mut available = 0;
    for (loc, level) in s.levels.iter() {
        if level.available() > 0 {
            d.add_text(f.avail_locs, loc.as_str());
        }
        available += level.available();
    }
    if available > 0 {
        d.add_text(f.flags, FLAG_IN_STOCK);
    }
    let total = s.levels.total();
    d.add_i64(f.on_hand, total.on_hand);
    d.add_i64(f.available, available);
    d.add_i64(f.incoming, total.incoming);
    d.add_i64(f.unsellable, total.unsellable);
    d.add_i64(f.in_transit, total.in_transit);
    if !channels.is_empty() {
        d.add_text(f.chan_conf, ANY_CHANNEL);
    }
    for (channel, n) in channels {
        d.add_text(f.chan_conf, channel.as_str());
        if *n > 0 {
            d.add_text(f.chan_stock, channel.as_str());
        }
        d.add_text(f.chan_avail, format!("{channel}{CHANNEL_VALUE_SEP}{n}"));
    }
    d.add_i64(f.updated, s.updated_at.millis());
    d
}

/// The availability stored for `channel` in a document's `chan_avail` values.
pub fn stored_channel_available<'a>(values: impl Iterator<Item = &'a str>, channel: &str) -> Option<i64> {
    values.filter_map(|v| v.rsplit_once(CHANNEL_VALUE_SEP)).find(|(c, _)| *c == channel).and_then(|(_, n)| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_paths_list_every_ancestor() {
        assert_eq!(category_paths("tops/t-shirts").collect::<Vec<_>>(), vec!["tops", "tops/t-shirts"]);
        assert_eq!(category_paths("shoes").collect::<Vec<_>>(), vec!["shoes"]);
        assert_eq!(category_paths("a/b/c").collect::<Vec<_>>(), vec!["a", "a/b", "a/b/c"]);
    }
}
