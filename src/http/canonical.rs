//! The canonical form of a JSON body that an idempotency fingerprint hashes: object
//! keys sorted (the last of a repeated key wins), no whitespace, numbers and strings as
//! `serde_json` writes them.
//!
//! It is byte for byte what `serde_json::to_vec(&serde_json::from_slice::<Value>(body)?)`
//! gives — the form every stored fingerprint was made with, so a retry of a request
//! answered before an upgrade still matches — but written straight from the parser's
//! events: no `Value` tree to build, walk and free on every write (a tenth of the
//! request path's own CPU went there). Each visitor method writes what the `Value` it
//! stands for would serialise to; a property test holds the two equal.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The canonical form of `body`, or `None` if it is not one JSON value (the caller
/// then fingerprints the raw bytes, as before).
pub fn canonical_json(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut de = serde_json::Deserializer::from_slice(body);
    Canon(&mut out).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(out)
}

/// Writes the canonical form of the value it is given to the end of its buffer.
struct Canon<'o>(&'o mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Canon<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Canon<'_> {
    /// A scalar as `serde_json` serialises it.
    fn scalar<T: serde::Serialize + ?Sized, E: serde::de::Error>(self, v: &T) -> Result<(), E> {
        serde_json::to_writer(&mut *self.0, v).map_err(E::custom)
    }
}

impl<'de> Visitor<'de> for Canon<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(&v)
    }

    /// `Value` keeps a finite float and turns any other into `null`; `serde_json`
    /// writes a non-finite float as `null` too.
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(v)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push(b'[');
        let mut first = true;
        loop {
            let at = self.0.len();
            if !first {
                self.0.push(b',');
            }
            if seq.next_element_seed(Canon(&mut *self.0))?.is_none() {
                self.0.truncate(at);
                break;
            }
            first = false;
        }
        self.0.push(b']');
        Ok(())
    }

    /// The values are written in the order they come, then the object is rewritten
    /// from them in key order (a `BTreeMap`'s: bytewise), keeping the last value of a
    /// repeated key as `Map::insert` does.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let start = self.0.len();
        let mut entries: Vec<(Cow<'de, str>, std::ops::Range<usize>)> = Vec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let from = self.0.len();
            map.next_value_seed(Canon(&mut *self.0))?;
            entries.push((key, from - start..self.0.len() - start));
        }
        // Stable: among equal keys the last one written ends up last.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let values = self.0.split_off(start);
        self.0.push(b'{');
        let mut first = true;
        for (i, (key, range)) in entries.iter().enumerate() {
            if entries.get(i + 1).is_some_and(|next| next.0 == *key) {
                continue;
            }
            if !first {
                self.0.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut *self.0, key.as_ref()).map_err(serde::de::Error::custom)?;
            self.0.push(b':');
            self.0.extend_from_slice(&values[range.clone()]);
        }
        self.0.push(b'}');
        Ok(())
    }
}

/// An object key, borrowed from the body when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::canonical_json;

    /// What fingerprints were made with before: a `Value` and back.
    fn through_value(body: &[u8]) -> Option<Vec<u8>> {
        serde_json::from_slice::<Value>(body).ok().map(|v| serde_json::to_vec(&v).expect("a value serialises"))
    }

    fn same(body: &str) {
        assert_eq!(
            canonical_json(body.as_bytes()).map(String::from_utf8),
            through_value(body.as_bytes()).map(String::from_utf8),
            "body: {body}"
        );
    }

    #[test]
    fn keys_are_sorted_and_whitespace_dropped() {
        assert_eq!(
            canonical_json(br#" { "b" : [1, {"z":null,"a":true}], "a":"x" } "#).unwrap(),
            br#"{"a":"x","b":[1,{"a":true,"z":null}]}"#
        );
    }

    #[test]
    fn it_writes_what_a_value_would_for_the_awkward_cases() {
        for body in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"b":0,"a":{"c":3,"c":[]}}"#,
            r#"{"é":1,"e":2,"\u00e9x":3,"Z":4,"":5}"#,
            r#"["\u00e9","\/","\"\\\b\f\n\r\t","\u0001","\ud83d\ude00","😀"]"#,
            r#"[0,-0,1.0,1e2,1E-2,-1.5e300,0.1,18446744073709551615,18446744073709551616,-9223372036854775808,-9223372036854775809]"#,
            r#"[1.7976931348623157e308,5e-324,123456789012345678901234567890]"#,
            r#"[[],{},[[]],[{}],"",null,true,false]"#,
            r#""just a string""#,
            "42",
            "\t\n null \r\n",
        ] {
            same(body);
        }
    }

    #[test]
    fn what_a_value_refuses_it_refuses() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for body in ["", "{", r#"{"a":1}x"#, r#"{"a":}"#, "[1,]", "1e400", r#""\ud800""#, "nul", r#"{1:2}"#, deep.as_str()] {
            assert_eq!(canonical_json(body.as_bytes()), None, "body: {body}");
            assert_eq!(through_value(body.as_bytes()), None, "body: {body}");
        }
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::vec(("[a-cé\"\\\\]{0,3}", inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// A rendering of `v` as a client might send it: pretty or compact, and an object's
    /// keys in the order given, a key possibly twice.
    fn render(v: &Value, pretty: bool, dup: bool, out: &mut String) {
        let sep = if pretty { ",\n  " } else { "," };
        match v {
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(sep);
                    }
                    render(item, pretty, dup, out);
                }
                out.push(']');
            }
            Value::Object(m) => {
                out.push('{');
                for (i, (k, item)) in m.iter().rev().enumerate() {
                    if i > 0 {
                        out.push_str(sep);
                    }
                    let key = serde_json::to_string(k).unwrap();
                    if dup {
                        out.push_str(&format!("{key}:[\"overwritten\"]{sep}"));
                    }
                    out.push_str(&key);
                    out.push_str(if pretty { " : " } else { ":" });
                    render(item, pretty, dup, out);
                }
                out.push('}');
            }
            scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
        }
    }

    proptest! {
        #[test]
        fn it_is_byte_for_byte_what_a_value_gives(v in json(), pretty: bool, dup: bool) {
            let mut body = String::new();
            render(&v, pretty, dup, &mut body);
            let got = canonical_json(body.as_bytes());
            prop_assert!(got.is_some(), "{body}");
            prop_assert_eq!(got, through_value(body.as_bytes()));
        }
    }
}
