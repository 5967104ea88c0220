//! The structural check every JSON request body passes before it is
//! deserialized into its type: one JSON value and nothing after it, no
//! object with the same key twice (at any depth, free-form values
//! included), and no nesting deeper than `max_json_depth`.
//!
//! The document is walked with serde_json's own parser (a [`Visitor`] that
//! keeps the keys of the object it is in and the depth); the typed
//! deserialization that follows names wrong types and unknown fields.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::{self, Write as _};

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

/// Why a body is not acceptable JSON.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// Checks `bytes` as one JSON document: well-formed, nothing after the
/// value, no duplicate key in any object, at most `max_depth` levels of
/// arrays and objects.
///
/// # Errors
///
/// [`JsonError`] saying what is wrong and where (the path of the object,
/// `.` for the top level).
pub fn check(bytes: &[u8], max_depth: usize) -> Result<(), JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut path = Vec::new();
    Node { depth: 0, max_depth, path: &mut path }.deserialize(&mut de).map_err(|e| JsonError(e.to_string()))?;
    de.end().map_err(|e| JsonError(format!("unexpected data after the JSON value: {e}")))
}

enum Segment<'de> {
    Key(Cow<'de, str>),
    Index(usize),
}

fn render(path: &[Segment<'_>]) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) if out.is_empty() => out.push_str(k),
            Segment::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Segment::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

/// One value at `depth` (the number of arrays and objects around it).
struct Node<'p, 'de> {
    depth: usize,
    max_depth: usize,
    path: &'p mut Vec<Segment<'de>>,
}

impl Node<'_, '_> {
    fn enter<E: serde::de::Error>(&self) -> Result<usize, E> {
        let depth = self.depth + 1;
        if depth > self.max_depth {
            return Err(E::custom(format_args!(
                "nesting deeper than {} levels (max_json_depth) at `{}`",
                self.max_depth,
                render(self.path)
            )));
        }
        Ok(depth)
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        let mut i = 0;
        loop {
            self.path.push(Segment::Index(i));
            let item = seq.next_element_seed(Node { depth, max_depth: self.max_depth, path: &mut *self.path });
            self.path.pop();
            if item?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        let mut keys = Keys::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if keys.contains(&key) {
                return Err(A::Error::custom(format_args!(
                    "duplicate key `{key}` in the object at `{}`",
                    render(self.path)
                )));
            }
            self.path.push(Segment::Key(key.clone()));
            let value = map.next_value_seed(Node { depth, max_depth: self.max_depth, path: &mut *self.path });
            self.path.pop();
            value?;
            keys.insert(key);
        }
        Ok(())
    }
}

/// Objects with up to this many keys are checked for duplicates by
/// comparing (no hashing, no allocation); larger ones by a set.
const FEW_KEYS: usize = 16;

/// The keys seen so far in one object.
#[derive(Default)]
struct Keys<'de> {
    few: Vec<Cow<'de, str>>,
    many: HashSet<Cow<'de, str>>,
}

impl<'de> Keys<'de> {
    fn contains(&self, key: &str) -> bool {
        if self.many.is_empty() { self.few.iter().any(|k| k == key) } else { self.many.contains(key) }
    }

    fn insert(&mut self, key: Cow<'de, str>) {
        if self.many.is_empty() && self.few.len() < FEW_KEYS {
            self.few.push(key);
        } else {
            self.many.extend(self.few.drain(..));
            self.many.insert(key);
        }
    }
}

/// An object key, borrowed from the body when it holds no escape.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Cow<'de, str>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    fn err(s: &str, depth: usize) -> String {
        check(s.as_bytes(), depth).expect_err(s).to_string()
    }

    #[test]
    fn accepts_plain_documents() {
        check(br#"{"a": [1, {"b": null}], "c": "x", "d": {"a": 1}}"#, 32).expect("valid");
        check(b" [1,2] \n", 32).expect("whitespace around");
    }

    #[test]
    fn refuses_trailing_data() {
        assert!(err(r#"{"data":"x"} garbage"#, 32).contains("after the JSON value"));
        assert!(err(r#"{"data":"x"}{}"#, 32).contains("after the JSON value"));
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        assert!(err(r#"{"a":1,"a":2}"#, 32).contains("duplicate key `a` in the object at `.`"));
        let e = err(r#"{"data":{"x":[0,{"k":1,"k":2}]}}"#, 32);
        assert!(e.contains("duplicate key `k` in the object at `data.x[1]`"), "{e}");
        // The same key in sibling objects is fine.
        check(br#"[{"k":1},{"k":2}]"#, 32).expect("siblings");
    }

    #[test]
    fn duplicates_are_found_in_large_objects_and_escaped_keys() {
        let keys: Vec<String> = (0..40).map(|i| format!("\"k{i}\": {i}")).collect();
        check(format!("{{{}}}", keys.join(",")).as_bytes(), 32).expect("40 distinct keys");
        let e = err(&format!("{{{}, \"k3\": 0}}", keys.join(",")), 32);
        assert!(e.contains("duplicate key `k3`"), "{e}");
        let e = err(&format!("{{{}, \"k39\": 0}}", keys.join(",")), 32);
        assert!(e.contains("duplicate key `k39`"), "{e}");
        let e = err(r#"{"a\u0062": 1, "ab": 2}"#, 32);
        assert!(e.contains("duplicate key `ab`"), "{e}");
    }

    #[test]
    fn refuses_deep_nesting() {
        check(&[b"[".repeat(4), b"]".repeat(4)].concat(), 4).expect("at the limit");
        let e = err(&format!("{}{}", "[".repeat(5), "]".repeat(5)), 4);
        assert!(e.contains("nesting deeper than 4 levels (max_json_depth) at `[0][0][0][0]`"), "{e}");
        let deep = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
        assert!(err(&deep, 32).contains("nesting deeper than 32"));
    }
}
