//! Strict JSON for nixseal's contracts: an object that names a key twice is
//! an error, never "the last one wins".
//!
//! serde's derived structs already refuse a repeated field; maps keyed by
//! host or secret name (`BTreeMap`) silently keep the last value. Every such
//! map in a contract is read through [`unique_map`].

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// `#[serde(deserialize_with = "crate::contract::json::unique_map")]` for a
/// `BTreeMap<String, V>`: refuses a key that appears twice, naming it.
pub fn unique_map<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object whose keys are all different")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let duplicate = |key: &str| {
                serde::de::Error::custom(format_args!(
                    "duplicate key {key:?} (each name may appear once; remove or rename one)"
                ))
            };
            // Nix writes keys sorted: while they come in order, a repeated
            // key is the previous one, and the map is built in one pass
            // at the end. Out of order, each key is looked up.
            let mut sorted: Vec<(String, V)> = Vec::new();
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                let in_order = out.is_empty()
                    && sorted
                        .last()
                        .is_none_or(|(last, _): &(String, V)| *last < key);
                if !in_order {
                    out.extend(sorted.drain(..));
                    if out.contains_key(&key) {
                        return Err(duplicate(&key));
                    }
                }
                // A problem inside the value names its key (the host, the
                // secret): "in \"web1\": unknown field `x`".
                let value = map.next_value().map_err(|e: A::Error| {
                    let e = e.to_string();
                    serde::de::Error::custom(format_args!("in {key:?}: {}", strip_position(&e)))
                })?;
                if in_order {
                    sorted.push((key, value));
                } else {
                    out.insert(key, value);
                }
            }
            if out.is_empty() {
                return Ok(sorted.into_iter().collect());
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique(PhantomData))
}

/// A serde_json message without its trailing ` at line N column M` (the
/// outer error adds its own).
fn strip_position(msg: &str) -> &str {
    if let Some(i) = msg.rfind(" at line ") {
        let rest = &msg[i + " at line ".len()..];
        if let Some((l, c)) = rest.split_once(" column ") {
            if !l.is_empty()
                && !c.is_empty()
                && l.bytes().all(|b| b.is_ascii_digit())
                && c.bytes().all(|b| b.is_ascii_digit())
            {
                return &msg[..i];
            }
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default, deserialize_with = "unique_map")]
        m: BTreeMap<String, u32>,
        #[allow(dead_code)]
        #[serde(default)]
        x: u32,
    }

    #[test]
    fn refuses_a_repeated_key_and_a_repeated_field() {
        let ok: Doc = serde_json::from_str(r#"{"m":{"a":1,"b":2}}"#).unwrap();
        assert_eq!(ok.m.len(), 2);
        let e = serde_json::from_str::<Doc>(r#"{"m":{"a":1,"a":2}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate key \"a\""), "{e}");
        // Derived structs refuse a repeated field on their own.
        let e = serde_json::from_str::<Doc>(r#"{"x":1,"x":2}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate field `x`"), "{e}");
        // A problem inside a value names its key, once with a position.
        let e = serde_json::from_str::<Doc>(r#"{"m":{"a":1,"b":"x"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("in \"b\": invalid type: string \"x\""), "{e}");
        assert_eq!(e.matches(" at line ").count(), 1, "{e}");
        // Out of order (Nix sorts; a hand-written profile may not), a
        // repeated key is still found, before or after the first one out
        // of order.
        for doc in [
            r#"{"m":{"b":1,"a":2,"b":3}}"#,
            r#"{"m":{"a":1,"c":2,"b":3,"a":4}}"#,
            r#"{"m":{"a":1,"c":2,"b":3,"c":4}}"#,
            r#"{"m":{"c":1,"b":2,"d":3,"b":4}}"#,
        ] {
            let e = serde_json::from_str::<Doc>(doc).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{doc}: {e}");
        }
        let ok: Doc = serde_json::from_str(r#"{"m":{"c":1,"a":2,"b":3,"d":4}}"#).unwrap();
        assert_eq!(ok.m.keys().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        // A missing map is empty (serde default), as before.
        assert!(serde_json::from_str::<Doc>("{}").unwrap().m.is_empty());
    }
}
