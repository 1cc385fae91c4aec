//! Validated identifiers. A value of these types always matches the contract's
//! pattern, so nothing past deserialisation re-checks it.

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId {
    pub kind: &'static str,
    pub pattern: &'static str,
}

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a valid {}: must match {}", self.kind, self.pattern)
    }
}

impl std::error::Error for InvalidId {}

pub const BRAND_ID_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";
pub const ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$";

fn is_brand_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..].iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $check:ident, $kind:literal, $pattern:ident, $description:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "CompactString", into = "CompactString")]
        pub struct $name(CompactString);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                if $check(s) {
                    Ok($name(CompactString::from(s)))
                } else {
                    Err(InvalidId { kind: $kind, pattern: $pattern })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<CompactString> for $name {
            type Error = InvalidId;
            fn try_from(s: CompactString) -> Result<Self, InvalidId> {
                if $check(&s) {
                    Ok($name(s))
                } else {
                    Err(InvalidId { kind: $kind, pattern: $pattern })
                }
            }
        }

        impl From<$name> for CompactString {
            fn from(id: $name) -> CompactString {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0.as_str())
            }
        }

        /// In the API: a string of the type's pattern.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some($pattern))
                    .description(Some($description))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A brand id: `^[a-z0-9][a-z0-9_-]{0,63}$`.
    BrandId, is_brand_id, "brand id", BRAND_ID_PATTERN,
    "A brand id: 1 to 64 of `a-z`, `0-9`, `_` and `-`, starting with a letter or digit."
);
id_type!(
    /// Any other id (sku, location, channel, reservation, shipment, token, ...):
    /// `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`.
    Id, is_id, "id", ID_PATTERN,
    "An id (of a SKU, location, channel, reservation, shipment, ...): 1 to 128 of `A-Z`, `a-z`, `0-9`, `.`, `_`, `:` \
     and `-`, starting with a letter or digit."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brand_ids() {
        for ok in ["a", "b-001", "brand_x", "0", &"a".repeat(64)] {
            assert!(BrandId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "b.1", "ブランド", &"a".repeat(65), "a b"] {
            assert!(BrandId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids() {
        for ok in ["S1", "sku.1:red-M_2", "0", &"Z".repeat(128)] {
            assert!(Id::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "a/b", "a b", "ア", &"Z".repeat(129), "a%20"] {
            assert!(Id::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: Id = serde_json::from_str("\"S-1\"").unwrap();
        assert_eq!(ok.as_str(), "S-1");
        let err = serde_json::from_str::<Id>("\"bad id\"").unwrap_err();
        assert!(err.to_string().contains("must match"));
    }
}
