//! Strict JSON input: parse, check, patch.
//!
//! Everything a user hands to the store goes through [`parse_strict`]:
//! it must be UTF-8, at most [`MAX_JSON_BYTES`] long, nested at most
//! [`MAX_DEPTH`] levels deep, and its objects must not repeat a key (a
//! repeated key would silently drop data). Errors carry line and column.
//!
//! The depth limit is one limit on the state itself, in every path: what a
//! save accepts, an update produces, a recovery restores and doctor checks
//! is at most [`MAX_DEPTH`] levels, and a stored envelope (one level more)
//! is read with [`from_slice_nested`], so the envelope never counts.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// Largest JSON document accepted as state or event data.
pub const MAX_JSON_BYTES: usize = 64 * 1024 * 1024;

/// Deepest nesting of arrays and objects accepted in a state or event
/// data: `[[1]]` is 2 levels, a scalar 0.
pub const MAX_DEPTH: usize = 128;

/// serde_json stops at 128 levels of its own (one less than that nests):
/// inputs that hit its limit are measured and, when within ours, parsed
/// again without it. A depth measured first bounds the recursion.
fn hit_serde_limit(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("recursion limit exceeded")
}

/// Nesting depth of JSON text: the deepest run of open `[`/`{` outside
/// strings. Text that is not JSON gets some number; parse it too.
pub fn text_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string through its closing quote.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) {
                        Some(n) if bytes[i + n] == b'\\' => i += n + 2,
                        Some(n) => {
                            i += n + 1;
                            break;
                        }
                        None => return max,
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// Nesting depth of a value: iterative (no recursion on deep input), with
/// memory in proportion to the depth, not the size.
pub fn value_depth(v: &Value) -> usize {
    enum Children<'a> {
        Array(std::slice::Iter<'a, Value>),
        Object(serde_json::map::Values<'a>),
    }
    fn children(v: &Value) -> Option<Children<'_>> {
        match v {
            Value::Array(a) => Some(Children::Array(a.iter())),
            Value::Object(o) => Some(Children::Object(o.values())),
            _ => None,
        }
    }
    let mut stack: Vec<Children<'_>> = children(v).into_iter().collect();
    let mut max = stack.len();
    while let Some(top) = stack.last_mut() {
        let next = match top {
            Children::Array(it) => it.next(),
            Children::Object(it) => it.next(),
        };
        match next {
            Some(child) => {
                if let Some(c) = children(child) {
                    stack.push(c);
                    max = max.max(stack.len());
                }
            }
            None => {
                stack.pop();
            }
        }
    }
    max
}

fn too_deep(depth: usize, context: &str) -> Error {
    Error::invalid(
        "input",
        format!("{context} is nested {depth} levels deep; at most {MAX_DEPTH} levels are accepted"),
    )
}

/// Refuse a value nested deeper than [`MAX_DEPTH`] (a state a library
/// caller built, or what an update made of one).
pub fn check_depth(v: &Value, context: &str) -> Result<()> {
    let depth = value_depth(v);
    if depth > MAX_DEPTH {
        return Err(too_deep(depth, context));
    }
    Ok(())
}

/// Refuse a value whose JSON is longer than [`MAX_JSON_BYTES`] (compact
/// form), counted without building the text.
pub fn check_value_size(v: &Value, context: &str) -> Result<()> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            if self.0 > MAX_JSON_BYTES {
                return Err(std::io::Error::other("too large"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    if serde_json::to_writer(&mut count, v).is_err() || count.0 > MAX_JSON_BYTES {
        return Err(Error::invalid(
            "input",
            format!(
                "{context} would be more than {} MiB of JSON",
                MAX_JSON_BYTES / (1024 * 1024)
            ),
        ));
    }
    Ok(())
}

/// Deserialize `bytes` as serde_json does, but allowing `MAX_DEPTH +
/// extra` levels of nesting (`extra` = 1 for a stored envelope around a
/// state), no more. Errors are messages for a "corrupt" report.
pub fn from_slice_nested<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
    extra: usize,
) -> std::result::Result<T, String> {
    match serde_json::from_slice::<T>(bytes) {
        Err(e) if hit_serde_limit(&e) => {
            let depth = text_depth(bytes);
            if depth > MAX_DEPTH + extra {
                return Err(format!(
                    "nested {depth} levels deep; a state may nest at most {MAX_DEPTH} levels"
                ));
            }
            let mut de = serde_json::Deserializer::from_slice(bytes);
            de.disable_recursion_limit();
            let v = T::deserialize(&mut de).map_err(|e| e.to_string())?;
            de.end().map_err(|e| e.to_string())?;
            Ok(v)
        }
        r => r.map_err(|e| e.to_string()),
    }
}

/// Parse `bytes` as one JSON value, rejecting anything a careful store should
/// not accept. `context` names the input in error messages.
pub fn parse_strict(bytes: &[u8], context: &str) -> Result<Value> {
    check_size(bytes, context)?;
    let value: Value = match serde_json::from_slice(bytes) {
        Err(e) if hit_serde_limit(&e) => {
            let depth = text_depth(bytes);
            if depth > MAX_DEPTH {
                return Err(too_deep(depth, context));
            }
            let mut de = serde_json::Deserializer::from_slice(bytes);
            de.disable_recursion_limit();
            let v = Value::deserialize(&mut de).map_err(|e| json_error(&e, context))?;
            de.end().map_err(|e| json_error(&e, context))?;
            v
        }
        r => r.map_err(|e| json_error(&e, context))?,
    };
    if value_may_hide_duplicates(bytes) {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        de.disable_recursion_limit(); // the depth was bounded by the parse
        NoDuplicates
            .deserialize(&mut de)
            .map_err(|e| json_error(&e, context))?;
    }
    Ok(value)
}

/// Check `bytes` exactly as [`parse_strict`] does, without building the
/// value: for input that is stored as text.
pub fn check_strict(bytes: &[u8], context: &str) -> Result<()> {
    check_size(bytes, context)?;
    let check = |unbounded: bool| {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        if unbounded {
            de.disable_recursion_limit();
        }
        NoDuplicates.deserialize(&mut de).and_then(|()| de.end())
    };
    match check(false) {
        Err(e) if hit_serde_limit(&e) => {
            let depth = text_depth(bytes);
            if depth > MAX_DEPTH {
                return Err(too_deep(depth, context));
            }
            check(true).map_err(|e| json_error(&e, context))
        }
        r => r.map_err(|e| json_error(&e, context)),
    }
}

fn check_size(bytes: &[u8], context: &str) -> Result<()> {
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
    Ok(())
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
        // Most objects have a few keys: a list is searched faster than a
        // set is built; large objects switch to a set.
        const LIST_MAX: usize = 16;
        let mut list: Vec<std::borrow::Cow<'de, str>> = Vec::new();
        let mut set: Option<HashSet<std::borrow::Cow<'de, str>>> = None;
        while let Some(key) = map.next_key_seed(Key)? {
            let repeated = match &set {
                Some(set) => set.contains(&key),
                None => list.contains(&key),
            };
            if repeated {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            match &mut set {
                Some(set) => {
                    set.insert(key);
                }
                None if list.len() < LIST_MAX => list.push(key),
                None => {
                    let mut all: HashSet<_> = list.drain(..).collect();
                    all.insert(key);
                    set = Some(all);
                }
            }
            map.next_value_seed(NoDuplicates)?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the input unless it holds escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(s))
    }
    fn visit_str<E>(self, s: &str) -> std::result::Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(s.to_string()))
    }
}

/// Apply an RFC 7396 merge patch.
pub fn merge_patch(doc: &mut Value, patch: &Value) {
    json_patch::merge(doc, patch);
}

/// Split an RFC 6901 JSON pointer into unescaped tokens.
///
/// A pointer has at most [`MAX_DEPTH`] tokens: a longer one names a place
/// deeper than a state may nest (and would build that deep a value).
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
    let steps = memchr::memchr_iter(b'/', pointer.as_bytes()).count();
    if steps > MAX_DEPTH {
        return Err(Error::invalid(
            "JSON pointer",
            format!(
                "it has {steps} steps; a state nests at most {MAX_DEPTH} levels, so a pointer has at most {MAX_DEPTH}"
            ),
        ));
    }
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
    fn the_depth_limit_is_exactly_128_levels_of_state() {
        let nest = |n: usize| "[".repeat(n) + &"]".repeat(n);
        for n in [1, 127, 128] {
            assert!(parse_strict(nest(n).as_bytes(), "s").is_ok(), "{n}");
            assert!(check_strict(nest(n).as_bytes(), "s").is_ok(), "{n}");
            assert_eq!(text_depth(nest(n).as_bytes()), n);
            let v = parse_strict(nest(n).as_bytes(), "s").unwrap();
            assert_eq!(value_depth(&v), n);
            assert!(check_depth(&v, "s").is_ok());
            // In an envelope: one level more, still read.
            let env = format!("{{\"state\": {}}}", nest(n));
            let read: Value = from_slice_nested(env.as_bytes(), 1).unwrap();
            assert_eq!(value_depth(&read), n + 1);
        }
        for n in [129, 100_000] {
            assert!(matches!(
                parse_strict(nest(n).as_bytes(), "s"),
                Err(Error::Invalid { .. })
            ));
            assert!(check_strict(nest(n).as_bytes(), "s").is_err());
            let env = format!("{{\"state\": {}}}", nest(n));
            assert!(from_slice_nested::<Value>(env.as_bytes(), 1).is_err());
        }
        // Brackets in strings do not count; escapes are skipped.
        assert_eq!(text_depth(br#"{"a": "[[[\"[[", "b": [1]}"#), 2);
        assert!(pointer_tokens(&"/x".repeat(128)).is_ok());
        assert!(pointer_tokens(&"/x".repeat(129)).is_err());
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

/// Write pretty JSON text (serde_json's layout) nested `depth` levels
/// deep: every line after the first gets `depth` more levels of indent.
/// Newlines in pretty JSON are all layout (strings escape theirs), so this
/// is a copy that adds spaces after each one.
pub fn write_nested<W: std::io::Write>(
    text: &[u8],
    depth: usize,
    out: &mut W,
) -> std::io::Result<()> {
    if depth == 0 {
        return out.write_all(text);
    }
    let pad = vec![b' '; depth * 2];
    let mut rest = text;
    while let Some(i) = memchr::memchr(b'\n', rest) {
        out.write_all(&rest[..=i])?;
        out.write_all(&pad)?;
        rest = &rest[i + 1..];
    }
    out.write_all(rest)
}

/// Take `levels` levels of indent (two spaces each) off every line after
/// the first of pretty JSON text, in place: the inverse of
/// [`write_nested`]. Lines with less indent lose what they have.
pub fn dedent_in_place(buf: &mut Vec<u8>, levels: usize) {
    let strip = levels * 2;
    if strip == 0 {
        return;
    }
    let mut read = 0;
    let mut write = 0;
    while read < buf.len() {
        let end = memchr::memchr(b'\n', &buf[read..]).map_or(buf.len(), |i| read + i + 1);
        buf.copy_within(read..end, write);
        write += end - read;
        read = end;
        let mut skipped = 0;
        while skipped < strip && buf.get(read) == Some(&b' ') {
            read += 1;
            skipped += 1;
        }
    }
    buf.truncate(write);
}

/// Write the JSON text `text` (valid JSON, as checked by a parse) laid out
/// as serde_json's pretty printer lays it out (two-space indent, `": "`),
/// nested `depth` levels deep: every line after the first is indented by
/// `depth` more levels. Strings and numbers are copied as they are.
///
/// It is how a stored state is printed without building a `Value` (about
/// ten times the text's size): one pass, constant memory.
pub fn reindent<W: std::io::Write + ?Sized>(
    text: &[u8],
    depth: usize,
    out: &mut W,
) -> std::io::Result<()> {
    /// Output is gathered here and written in large pieces: `out` may be
    /// a `dyn Write`, and a call per token would dominate.
    const FLUSH_AT: usize = 64 * 1024;
    fn newline(buf: &mut Vec<u8>, depth: usize) {
        buf.push(b'\n');
        buf.resize(buf.len() + depth * 2, b' ');
    }
    let mut buf: Vec<u8> = Vec::with_capacity(FLUSH_AT + 1024);
    let mut depth = depth;
    let mut i = 0;
    let next_significant = |mut j: usize| {
        while j < text.len() && text[j].is_ascii_whitespace() {
            j += 1;
        }
        text.get(j).copied()
    };
    while i < text.len() {
        if buf.len() >= FLUSH_AT {
            out.write_all(&buf)?;
            buf.clear();
        }
        let b = text[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                // Copy the string through its closing quote.
                let start = i;
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &text[i..]) {
                        Some(k) if text[i + k] == b'\\' => i += k + 2,
                        Some(k) => {
                            i += k + 1;
                            break;
                        }
                        None => {
                            i = text.len();
                            break;
                        }
                    }
                }
                let piece = &text[start..i.min(text.len())];
                if piece.len() > FLUSH_AT {
                    out.write_all(&buf)?;
                    buf.clear();
                    out.write_all(piece)?;
                } else {
                    buf.extend_from_slice(piece);
                }
            }
            b'{' | b'[' => {
                let close = if b == b'{' { b'}' } else { b']' };
                buf.push(b);
                if next_significant(i + 1) == Some(close) {
                    buf.push(close);
                    i += 1;
                    while i < text.len() && text[i] != close {
                        i += 1;
                    }
                    i += 1;
                } else {
                    depth += 1;
                    newline(&mut buf, depth);
                    i += 1;
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut buf, depth);
                buf.push(b);
                i += 1;
            }
            b',' => {
                buf.push(b',');
                newline(&mut buf, depth);
                i += 1;
            }
            b':' => {
                buf.extend_from_slice(b": ");
                i += 1;
            }
            _ => {
                // A number or literal: up to the next delimiter.
                let start = i;
                while i < text.len()
                    && !matches!(
                        text[i],
                        b',' | b'}' | b']' | b':' | b' ' | b'\t' | b'\n' | b'\r'
                    )
                {
                    i += 1;
                }
                buf.extend_from_slice(&text[start..i]);
            }
        }
    }
    out.write_all(&buf)
}

/// Random JSON values, for property tests.
#[cfg(test)]
pub(crate) fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    use serde_json::json;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[ -~\\PC\"\\\\\n\t]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(("[a-z ,:{}\\[\\]\"]{0,6}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

#[cfg(test)]
mod reindent_tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::{arb_value, reindent};

    proptest! {
        /// Nesting pretty text and taking the nesting off give it back,
        /// and nested text is what the pretty printer writes inside an
        /// envelope.
        #[test]
        fn nesting_round_trips(v in arb_value(), depth in 0usize..4) {
            let text = serde_json::to_string_pretty(&v).unwrap();
            let mut nested = Vec::new();
            super::write_nested(text.as_bytes(), depth, &mut nested).unwrap();
            if depth == 1 {
                let stored = serde_json::to_string_pretty(&json!({"state": v})).unwrap();
                prop_assert_eq!(&stored[13..stored.len() - 2], std::str::from_utf8(&nested).unwrap());
            }
            super::dedent_in_place(&mut nested, depth);
            prop_assert_eq!(std::str::from_utf8(&nested).unwrap(), text);
        }
    }

    proptest! {
        /// The depth measured on text is the depth of the value it encodes.
        #[test]
        fn text_and_value_depths_agree(v in arb_value()) {
            let text = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(super::text_depth(text.as_bytes()), super::value_depth(&v));
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            prop_assert_eq!(super::text_depth(pretty.as_bytes()), super::value_depth(&v));
        }
    }

    fn pretty(text: &[u8], depth: usize) -> String {
        let mut out = Vec::new();
        reindent(text, depth, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    proptest! {
        /// Compact or pretty text comes out exactly as serde_json's pretty
        /// printer writes the value.
        #[test]
        fn matches_the_pretty_printer(v in arb_value()) {
            let want = serde_json::to_string_pretty(&v).unwrap();
            prop_assert_eq!(&pretty(serde_json::to_string(&v).unwrap().as_bytes(), 0), &want);
            prop_assert_eq!(&pretty(want.as_bytes(), 0), &want);
            // Nested in an envelope, as stored, it still comes out the same.
            let stored = serde_json::to_string_pretty(&json!({"state": v})).unwrap();
            let inner = stored.find(": ").unwrap() + 2;
            let body = &stored[inner..stored.len() - 2];
            prop_assert_eq!(pretty(body.as_bytes(), 0), want);
        }
    }

    #[test]
    fn nests_at_a_depth_and_keeps_empty_containers() {
        let text = br#"{ "a" : [ ], "b":{}, "c":[1, "x,]"] }"#;
        assert_eq!(
            pretty(text, 1),
            "{\n    \"a\": [],\n    \"b\": {},\n    \"c\": [\n      1,\n      \"x,]\"\n    ]\n  }"
        );
    }
}
