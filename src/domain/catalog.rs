//! The catalog fields of a SKU and their validation.

use std::collections::BTreeMap;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::error::FieldError;

pub const NAME_CHARS_MAX: usize = 500;
pub const TEXT_CHARS_MAX: usize = 200;
pub const TAGS_MAX: usize = 50;
pub const TAG_CHARS_MAX: usize = 100;
pub const ATTRIBUTES_MAX: usize = 50;
pub const ATTRIBUTE_VALUE_CHARS_MAX: usize = 1000;
/// Largest price accepted (yen): a trillion is beyond any garment.
pub const PRICE_MAX: i64 = 1_000_000_000_000;

/// What a brand says about a SKU. Stored as given, after validation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub product_id: Option<CompactString>,
    pub name: CompactString,
    pub color: Option<CompactString>,
    pub size: Option<CompactString>,
    pub category: Option<CompactString>,
    pub price: Option<i64>,
    /// Boxed, like `Levels`: 8 bytes less per SKU, serialised as a `Vec`.
    pub tags: Box<[CompactString]>,
    /// Sorted by key, keys unique.
    pub attributes: Vec<(CompactString, CompactString)>,
}

// A SKU's catalog fields as a client sends them, checked into a `Catalog` by
// `Catalog::new`; a catalog import row is this without its `sku`. The doc comment
// below is the schema's description in `/openapi.json`.
/// The body of `PUT .../skus/{sku}`. Unknown fields are refused: a misspelt field
/// would otherwise be silently dropped.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkuInput {
    /// The product (style) the SKU is a variant of.
    #[schema(value_type = Option<String>)]
    pub product_id: Option<CompactString>,
    /// 1..=500 characters.
    #[schema(value_type = String)]
    pub name: CompactString,
    /// The colour as the brand names it.
    #[schema(value_type = Option<String>)]
    pub color: Option<CompactString>,
    /// The size as the brand names it (`M`, `27.5`, ...).
    #[schema(value_type = Option<String>)]
    pub size: Option<CompactString>,
    /// A path such as `tops/t-shirts`.
    #[schema(value_type = Option<String>)]
    pub category: Option<CompactString>,
    /// Yen, >= 0.
    #[schema(minimum = 0)]
    pub price: Option<i64>,
    /// Search words; at most 50, each 1..=100 characters.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub tags: Vec<CompactString>,
    /// Free-form attributes (`material`: `cotton`); at most 50.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub attributes: BTreeMap<CompactString, CompactString>,
}

/// An attribute key as a field name in a problem: cut to [`TAG_CHARS_MAX`]
/// characters, so a key too long to be valid is not repeated whole.
fn shown_key(k: &str) -> &str {
    k.char_indices().nth(TAG_CHARS_MAX).map_or(k, |(cut, _)| &k[..cut])
}

fn check_text(errors: &mut Vec<FieldError>, field: &str, value: &str, min: usize, max: usize) {
    let n = value.chars().count();
    if n < min || n > max {
        errors.push(FieldError::new(field, format!("must be {min}..={max} characters, got {n}")));
    } else if value.chars().any(char::is_control) {
        errors.push(FieldError::new(field, "must not contain control characters"));
    }
}

impl Catalog {
    /// The catalog of `input`, checked as every way in checks it (`PUT .../skus/{sku}`,
    /// a catalog import row): every problem, each naming its field ([`Catalog::validate`]).
    pub fn new(input: SkuInput) -> Result<Catalog, Vec<FieldError>> {
        let SkuInput { product_id, name, color, size, category, price, tags, attributes } = input;
        // The stored forms: tags boxed, attributes sorted by key (a `BTreeMap` has one of each).
        let catalog =
            Catalog { product_id, name, color, size, category, price, tags: tags.into(), attributes: attributes.into_iter().collect() };
        let problems = catalog.validate();
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(catalog)
    }

    /// Every problem with the fields, each naming its field.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        check_text(&mut e, "name", &self.name, 1, NAME_CHARS_MAX);
        for (field, v) in [("product_id", &self.product_id), ("color", &self.color), ("size", &self.size), ("category", &self.category)] {
            if let Some(v) = v {
                check_text(&mut e, field, v, 1, TEXT_CHARS_MAX);
            }
        }
        if let Some(p) = self.price {
            if !(0..=PRICE_MAX).contains(&p) {
                e.push(FieldError::new("price", format!("must be 0..={PRICE_MAX} (yen)")));
            }
        }
        // Past the count bound the elements are not checked one by one: a list of
        // 300,000 empty tags would otherwise give 300,000 problems.
        if self.tags.len() > TAGS_MAX {
            e.push(FieldError::new("tags", format!("at most {TAGS_MAX} tags, got {}", self.tags.len())));
        } else {
            for (i, t) in self.tags.iter().enumerate() {
                check_text(&mut e, &format!("tags[{i}]"), t, 1, TAG_CHARS_MAX);
            }
        }
        if self.attributes.len() > ATTRIBUTES_MAX {
            e.push(FieldError::new("attributes", format!("at most {ATTRIBUTES_MAX} attributes, got {}", self.attributes.len())));
        } else {
            for (k, v) in &self.attributes {
                let field = format!("attributes.{}", shown_key(k));
                check_text(&mut e, &field, k, 1, TAG_CHARS_MAX);
                check_text(&mut e, &field, v, 0, ATTRIBUTE_VALUE_CHARS_MAX);
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Catalog {
        Catalog {
            name: "オーバーサイズ Tシャツ".into(), price: Some(3990), tags: Box::new(["cotton".into()]), ..Catalog::default()
        }
    }

    #[test]
    fn valid_catalog_has_no_errors() {
        assert!(ok().validate().is_empty());
    }

    #[test]
    fn each_problem_names_its_field() {
        let mut c = ok();
        c.name = "".into();
        c.price = Some(-1);
        c.tags = Box::new(["".into()]);
        c.color = Some("a\u{0}b".into());
        let fields: Vec<_> = c.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["name", "color", "price", "tags[0]"]);
    }

    #[test]
    fn new_sorts_attributes_and_refuses_what_validate_refuses() {
        let input = |name: &str| SkuInput {
            product_id: None,
            name: name.into(),
            color: None,
            size: None,
            category: None,
            price: Some(3990),
            tags: vec!["cotton".into()],
            attributes: [("material".into(), "cotton".into()), ("fit".into(), "loose".into())].into_iter().collect(),
        };
        let c = Catalog::new(input("Tシャツ")).unwrap();
        assert_eq!(c.attributes.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["fit", "material"]);
        assert_eq!(c.tags.len(), 1);
        let problems = Catalog::new(input("")).unwrap_err();
        assert_eq!((problems[0].field.as_str(), problems.len()), ("name", 1));
    }

    #[test]
    fn name_length_counts_characters_not_bytes() {
        let mut c = ok();
        c.name = "あ".repeat(NAME_CHARS_MAX).into();
        assert!(c.validate().is_empty());
        c.name = "あ".repeat(NAME_CHARS_MAX + 1).into();
        assert_eq!(c.validate().len(), 1);
    }
}
