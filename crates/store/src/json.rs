//! Strict JSON input: parse, check, patch.
//!
//! Everything a user hands to the store goes through [`parse_strict`]:
//! it must be UTF-8, at most [`MAX_JSON_BYTES`] long, nested at most 128
//! levels deep (serde_json's limit), and its objects must not repeat a key
//! (a repeated key would silently drop data). Errors carry line and column.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::error::{Error, Result};

/// Largest JSON document accepted as state or event data.
pub const MAX_JSON_BYTES: usize = 64 * 1024 * 1024;

/// Parse `bytes` as one JSON value, rejecting anything a careful store should
/// not accept. `context` names the input in error messages.
pub fn parse_strict(bytes: &[u8], context: &str) -> Result<Value> {
    if bytes.len() > MAX_JSON_BYTES {
        return Err(Error::invalid(
            "input",
            format!(
                "{context} is {} bytes; at most {} MiB of JSON is accepted",
                bytes.len(),
                MAX_JSON_BYTES / (1024 * 1024)
            ),
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| json_error(&e, context))?;
    if value_may_hide_duplicates(bytes) {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        NoDuplicates
            .deserialize(&mut de)
            .map_err(|e| json_error(&e, context))?;
    }
    Ok(value)
}

/// Convert a serde_json error into [`Error::InvalidJson`].
pub fn json_error(e: &serde_json::Error, context: &str) -> Error {
    let mut message = e.to_string();
    // serde_json appends " at line L column C"; we report those separately.
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    Error::InvalidJson {
        context: context.to_string(),
        line: e.line(),
        column: e.column(),
        message,
    }
}

/// Objects with two or more keys are the only place a duplicate can hide;
/// skip the second pass for inputs that cannot hold one.
fn value_may_hide_duplicates(bytes: &[u8]) -> bool {
    memchr::memchr(b'{', bytes).is_some() && memchr::memchr(b',', bytes).is_some()
}

/// A visitor that walks a document and fails on the first repeated key.
struct NoDuplicates;

impl<'de> DeserializeSeed<'de> for NoDuplicates {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            map.next_value_seed(NoDuplicates)?;
        }
        Ok(())
    }
}

/// Apply an RFC 7396 merge patch.
pub fn merge_patch(doc: &mut Value, patch: &Value) {
    json_patch::merge(doc, patch);
}

/// Split an RFC 6901 JSON pointer into unescaped tokens.
pub fn pointer_tokens(pointer: &str) -> Result<Vec<String>> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(Error::invalid(
            "JSON pointer",
            format!("{pointer:?} must be empty or start with '/' (e.g. /progress/percentage)"),
        ));
    };
    rest.split('/')
        .map(|tok| {
            let mut out = String::with_capacity(tok.len());
            let mut chars = tok.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err(Error::invalid(
                                "JSON pointer",
                                format!("{pointer:?}: '~' must be followed by 0 or 1"),
                            ))
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

/// Set the value at `pointer` (RFC 6901), creating missing objects on the
/// way. In arrays a token is an index to replace, or the length or `-` to
/// append.
pub fn set_pointer(doc: &mut Value, pointer: &str, value: Value) -> Result<()> {
    let tokens = pointer_tokens(pointer)?;
    let mut cur = doc;
    for (i, tok) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        if cur.is_null() {
            // A missing container: an array when appended to, else an object.
            *cur = if tok == "-" {
                Value::Array(Vec::new())
            } else {
                Value::Object(Default::default())
            };
        }
        cur = match cur {
            Value::Object(map) => {
                if last {
                    map.insert(tok.clone(), value);
                    return Ok(());
                }
                map.entry(tok.clone()).or_insert(Value::Null)
            }
            Value::Array(arr) => {
                let idx = if tok == "-" {
                    arr.len()
                } else {
                    array_index(tok, pointer)?
                };
                if idx > arr.len() {
                    return Err(Error::invalid(
                        "JSON pointer",
                        format!(
                            "{pointer:?}: index {idx} is past the end of an array of {}",
                            arr.len()
                        ),
                    ));
                }
                if idx == arr.len() {
                    arr.push(Value::Null);
                }
                if last {
                    arr[idx] = value;
                    return Ok(());
                }
                &mut arr[idx]
            }
            other => {
                return Err(Error::invalid(
                    "JSON pointer",
                    format!(
                        "{pointer:?}: /{} is a {}, not an object or array",
                        tokens[..i].join("/"),
                        type_name(other)
                    ),
                ))
            }
        };
    }
    *cur = value;
    Ok(())
}

fn array_index(tok: &str, pointer: &str) -> Result<usize> {
    let ok = !tok.is_empty()
        && tok.bytes().all(|b| b.is_ascii_digit())
        && (tok == "0" || !tok.starts_with('0'));
    ok.then(|| tok.parse().ok()).flatten().ok_or_else(|| {
        Error::invalid(
            "JSON pointer",
            format!("{pointer:?}: {tok:?} is not an array index"),
        )
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejects_bad_input_with_position() {
        match parse_strict(b"{\n  \"a\": 1,\n  \"b\": }", "state").unwrap_err() {
            Error::InvalidJson { line, column, .. } => {
                assert_eq!(line, 3);
                assert!(column > 0);
            }
            e => panic!("{e:?}"),
        }
        assert!(parse_strict(b"{\"a\":1,\"a\":2}", "state").is_err());
        assert!(parse_strict(b"{\"x\":{\"a\":1,\"b\":{},\"a\":2}}", "state").is_err());
        assert!(parse_strict(b"\"\xff\"", "state").is_err());
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(parse_strict(deep.as_bytes(), "state").is_err());
        assert!(parse_strict(b"", "state").is_err());
        assert!(parse_strict(b"{} {}", "state").is_err());
    }

    #[test]
    fn keeps_numbers_and_key_order() {
        let v = parse_strict(b"{\"z\":1.0,\"a\":123456789012345678901234567890}", "s").unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            "{\"z\":1.0,\"a\":123456789012345678901234567890}"
        );
    }

    #[test]
    fn set_pointer_creates_and_replaces() {
        let mut v = json!({"a": [1, 2]});
        set_pointer(&mut v, "/b/c", json!(3)).unwrap();
        set_pointer(&mut v, "/a/0", json!(9)).unwrap();
        set_pointer(&mut v, "/a/-", json!(4)).unwrap();
        set_pointer(&mut v, "/k~1x~0y", json!(true)).unwrap();
        set_pointer(&mut v, "/new/-", json!(1)).unwrap();
        assert_eq!(v["new"], json!([1]));
        v.as_object_mut().unwrap().remove("new");
        assert_eq!(v, json!({"a": [9, 2, 4], "b": {"c": 3}, "k/x~y": true}));
        assert!(set_pointer(&mut v, "/a/7", json!(0)).is_err());
        assert!(set_pointer(&mut v, "/a/01", json!(0)).is_err());
        assert!(set_pointer(&mut v, "/b/c/d", json!(0)).is_err());
        assert!(set_pointer(&mut v, "nope", json!(0)).is_err());
        set_pointer(&mut v, "", json!({"whole": 1})).unwrap();
        assert_eq!(v, json!({"whole": 1}));
    }

    #[test]
    fn merge_patch_rfc7396() {
        let mut v = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut v, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(v, json!({"a": "z", "c": {"d": "e"}}));
    }
}
