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
///
/// A fast scanner decides; serde_json is asked only about input it refuses,
/// for the message and position (and so the errors are serde_json's).
pub fn check_strict(bytes: &[u8], context: &str) -> Result<()> {
    check_size(bytes, context)?;
    if fast::check(bytes, MAX_DEPTH, true) {
        return Ok(());
    }
    check_strict_serde(bytes, context)?;
    // serde_json takes what the scanner refused: the scanner is meant to
    // agree with it (a property test compares them), so this is a bug of
    // ours; refusing is the side that loses nothing.
    Err(Error::invalid(
        "input",
        format!("{context} is not JSON mstate can check; please report this input"),
    ))
}

/// [`check_strict`] by serde_json alone (the visitor below).
fn check_strict_serde(bytes: &[u8], context: &str) -> Result<()> {
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

/// Write the JSON text `text` laid out as serde_json's pretty printer
/// lays it out (two-space indent, `": "`), nested `depth` levels deep:
/// every line after the first is indented by `depth` more levels. Strings
/// and numbers are copied as they are.
///
/// It is how a stored state is printed without building a `Value` (about
/// ten times the text's size): one pass, constant memory. Text that is not
/// JSON fails with [`std::io::ErrorKind::InvalidData`] (callers pass text
/// a parse or [`check_strict`] accepted).
pub fn reindent<W: std::io::Write + ?Sized>(
    text: &[u8],
    depth: usize,
    out: &mut W,
) -> std::io::Result<()> {
    /// Output is gathered here and written in large pieces: `out` may be
    /// a `dyn Write`, and a call per token would dominate.
    const FLUSH_AT: usize = 64 * 1024;
    struct Chunks<'w, W: std::io::Write + ?Sized> {
        buf: Vec<u8>,
        out: &'w mut W,
        err: Option<std::io::Error>,
    }
    impl<W: std::io::Write + ?Sized> Chunks<'_, W> {
        fn flush(&mut self) {
            if self.err.is_none() {
                if let Err(e) = self.out.write_all(&self.buf) {
                    self.err = Some(e);
                }
            }
            self.buf.clear();
        }
    }
    impl<W: std::io::Write + ?Sized> fast::Out for Chunks<'_, W> {
        const ON: bool = true;
        #[inline(always)]
        fn bytes(&mut self, b: &[u8]) {
            if self.buf.len() + b.len() > FLUSH_AT {
                self.flush();
                if b.len() > FLUSH_AT {
                    if self.err.is_none() {
                        if let Err(e) = self.out.write_all(b) {
                            self.err = Some(e);
                        }
                    }
                    return;
                }
            }
            self.buf.extend_from_slice(b);
        }
        #[inline(always)]
        fn byte(&mut self, b: u8) {
            self.buf.push(b);
        }
    }
    let chunks = Chunks {
        buf: Vec::with_capacity(FLUSH_AT + 1024),
        out,
        err: None,
    };
    let mut scan = fast::Scan::new(text, chunks, depth, usize::MAX, false);
    let valid = scan.document().is_ok();
    let mut chunks = scan.out;
    chunks.flush();
    if let Some(e) = chunks.err {
        return Err(e);
    }
    if !valid {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the text to lay out is not JSON",
        ));
    }
    Ok(())
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

/// A fast strict JSON scanner: one pass over the bytes, no `Value`, no
/// allocation per token, optionally laying the text out as serde_json's
/// pretty printer does while it checks it.
///
/// It accepts exactly what serde_json accepts (RFC 8259: the grammar, the
/// four whitespace bytes, escapes with paired surrogates, no control
/// bytes in strings, UTF-8), within a nesting depth, and with `dups` also
/// refuses an object that repeats a key (compared after unescaping, as
/// serde_json compares them). It says only yes or no: the callers ask
/// serde_json again for the message and position of a refusal, which
/// costs nothing on the path that matters (valid input).
mod fast {
    use std::borrow::Cow;
    use std::collections::HashSet;

    /// The input is not JSON this scanner accepts.
    #[derive(Debug)]
    pub struct Reject;

    type R<T> = std::result::Result<T, Reject>;

    /// Spaces for indents: serde_json indents two per level, and a depth
    /// is bounded, so one slice of it is every indent up to 256 levels.
    static SPACES: [u8; 512] = [b' '; 512];

    /// Objects with more keys than this check repeats with a set.
    const LIST_MAX: usize = 16;

    /// An open array or object.
    struct Frame<'a> {
        object: bool,
        /// Where this object's keys start in [`Scan::keys`].
        keys_from: usize,
        /// The keys of a large object.
        set: Option<HashSet<Key<'a>>>,
    }

    /// An object key as compared for repeats: its unescaped bytes, after
    /// its first eight bytes and length, which tell most keys apart
    /// without a call to compare memory (derived equality goes in order).
    #[derive(PartialEq, Eq, Hash)]
    struct Key<'a> {
        head: u64,
        len: usize,
        text: Cow<'a, [u8]>,
    }

    impl<'a> Key<'a> {
        fn new(text: Cow<'a, [u8]>) -> Self {
            let mut head = [0u8; 8];
            let n = text.len().min(8);
            head[..n].copy_from_slice(&text[..n]);
            Key {
                head: u64::from_le_bytes(head),
                len: text.len(),
                text,
            }
        }
    }

    /// What to do with the text while it is checked.
    pub trait Out {
        /// Whether anything is written (known at compile time).
        const ON: bool;
        fn bytes(&mut self, b: &[u8]);
        fn byte(&mut self, b: u8);
    }

    /// Check only.
    pub struct Nothing;

    impl Out for Nothing {
        const ON: bool = false;
        #[inline(always)]
        fn bytes(&mut self, _: &[u8]) {}
        #[inline(always)]
        fn byte(&mut self, _: u8) {}
    }

    impl Out for Vec<u8> {
        const ON: bool = true;
        #[inline(always)]
        fn bytes(&mut self, b: &[u8]) {
            self.extend_from_slice(b);
        }
        #[inline(always)]
        fn byte(&mut self, b: u8) {
            self.push(b);
        }
    }

    pub struct Scan<'a, O: Out> {
        s: &'a [u8],
        pub i: usize,
        pub out: O,
        /// Levels of indent every line after the first gets.
        base: usize,
        max_depth: usize,
        dups: bool,
        keys: Vec<Key<'a>>,
        stack: Vec<Frame<'a>>,
    }

    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;

    /// The bytes of `w` that are `"`, `\` or below 0x20, as high bits;
    /// the lowest one set is the first such byte (bits above it may be
    /// false positives).
    #[inline(always)]
    fn specials(w: u64) -> u64 {
        let q = w ^ (ONES * u64::from(b'"'));
        let b = w ^ (ONES * u64::from(b'\\'));
        let zero = |x: u64| x.wrapping_sub(ONES) & !x;
        (zero(q) | zero(b) | w.wrapping_sub(ONES * 0x20) & !w) & HIGHS
    }

    /// The bytes of `w` that are not a space, as high bits (lowest set
    /// = first).
    #[inline(always)]
    fn not_spaces(w: u64) -> u64 {
        let x = w ^ (ONES * u64::from(b' '));
        // A byte of x is non-zero: (x | (x + 0x7f..) ) has its high bit.
        ((x & !HIGHS).wrapping_add(!HIGHS) | x) & HIGHS
    }

    fn hex4(s: &[u8], i: usize) -> R<u32> {
        let d = s.get(i..i + 4).ok_or(Reject)?;
        let mut n = 0u32;
        for &c in d {
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(Reject),
            };
            n = n * 16 + u32::from(v);
        }
        Ok(n)
    }

    /// Unescape the body of a string (between its quotes), already
    /// checked by [`Scan::string`].
    fn unescape(body: &[u8]) -> R<Vec<u8>> {
        let mut out = Vec::with_capacity(body.len());
        let mut i = 0;
        while i < body.len() {
            let c = body[i];
            if c != b'\\' {
                out.push(c);
                i += 1;
                continue;
            }
            let e = *body.get(i + 1).ok_or(Reject)?;
            i += 2;
            let ch = match e {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let n = hex4(body, i)?;
                    i += 4;
                    let code = if (0xD800..0xDC00).contains(&n) {
                        let lo = hex4(body, i + 2)?;
                        i += 6;
                        0x10000 + ((n - 0xD800) << 10) + (lo - 0xDC00)
                    } else {
                        n
                    };
                    char::from_u32(code).ok_or(Reject)?
                }
                _ => return Err(Reject),
            };
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
        Ok(out)
    }

    impl<'a, O: Out> Scan<'a, O> {
        pub fn new(s: &'a [u8], out: O, base: usize, max_depth: usize, dups: bool) -> Self {
            Scan {
                s,
                i: 0,
                out,
                base,
                max_depth,
                dups,
                keys: Vec::new(),
                stack: Vec::new(),
            }
        }

        #[inline(always)]
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }

        /// Skip whitespace; the spaces of an indent eight at a time.
        #[inline(always)]
        pub fn ws(&mut self) {
            let s = self.s;
            let mut i = self.i;
            while let Some(&c) = s.get(i) {
                // Most tokens have no whitespace before them at all.
                if c > b' ' {
                    break;
                }
                match c {
                    b'\n' | b' ' => {
                        i += 1;
                        while let Some(w) = s.get(i..i + 8) {
                            let w = u64::from_le_bytes([
                                w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
                            ]);
                            let m = not_spaces(w);
                            if m != 0 {
                                i += (m.trailing_zeros() / 8) as usize;
                                break;
                            }
                            i += 8;
                        }
                    }
                    b'\t' | b'\r' => i += 1,
                    _ => break,
                }
            }
            self.i = i;
        }

        #[inline(always)]
        fn newline(&mut self) {
            if O::ON {
                let n = (self.base + self.stack.len()) * 2;
                self.out.byte(b'\n');
                if n <= SPACES.len() {
                    self.out.bytes(&SPACES[..n]);
                } else {
                    for _ in 0..n {
                        self.out.byte(b' ');
                    }
                }
            }
        }

        /// A string at `self.i` (its opening quote): checked, copied, and
        /// returned with whether it holds an escape.
        #[inline(always)]
        fn string(&mut self) -> R<(&'a [u8], bool)> {
            let s = self.s;
            let start = self.i;
            let mut i = start + 1;
            let mut escaped = false;
            loop {
                while let Some(w) = s.get(i..i + 8) {
                    let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                    let m = specials(w);
                    if m != 0 {
                        i += (m.trailing_zeros() / 8) as usize;
                        break;
                    }
                    i += 8;
                }
                match s.get(i) {
                    Some(b'"') => break,
                    Some(b'\\') => {
                        escaped = true;
                        match s.get(i + 1) {
                            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                            Some(b'u') => {
                                let n = hex4(s, i + 2)?;
                                i += 6;
                                if (0xDC00..0xE000).contains(&n) {
                                    return Err(Reject);
                                }
                                if (0xD800..0xDC00).contains(&n) {
                                    if s.get(i) != Some(&b'\\') || s.get(i + 1) != Some(&b'u') {
                                        return Err(Reject);
                                    }
                                    let lo = hex4(s, i + 2)?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return Err(Reject);
                                    }
                                    i += 6;
                                }
                            }
                            _ => return Err(Reject),
                        }
                    }
                    Some(&c) if c >= 0x20 => i += 1,
                    _ => return Err(Reject), // a control byte, or the end
                }
            }
            i += 1;
            self.i = i;
            let piece = &s[start..i];
            self.out.bytes(piece);
            Ok((piece, escaped))
        }

        #[inline(always)]
        fn digits(&mut self) -> usize {
            let from = self.i;
            while matches!(self.s.get(self.i), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            self.i - from
        }

        fn number(&mut self) -> R<()> {
            let start = self.i;
            if self.peek() == Some(b'-') {
                self.i += 1;
            }
            match self.peek() {
                Some(b'0') => self.i += 1,
                Some(b'1'..=b'9') => {
                    self.digits();
                }
                _ => return Err(Reject),
            }
            if self.peek() == Some(b'.') {
                self.i += 1;
                if self.digits() == 0 {
                    return Err(Reject);
                }
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.i += 1;
                if matches!(self.peek(), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                if self.digits() == 0 {
                    return Err(Reject);
                }
            }
            let piece = &self.s[start..self.i];
            self.out.bytes(piece);
            Ok(())
        }

        fn literal(&mut self, word: &[u8]) -> R<()> {
            if self.s.get(self.i..self.i + word.len()) != Some(word) {
                return Err(Reject);
            }
            self.i += word.len();
            self.out.bytes(word);
            Ok(())
        }

        /// An object key and its colon, with the repeat check.
        fn key(&mut self) -> R<()> {
            if self.peek() != Some(b'"') {
                return Err(Reject);
            }
            let (piece, escaped) = self.string()?;
            if self.dups {
                let key = Key::new(if escaped {
                    Cow::Owned(unescape(&piece[1..piece.len() - 1])?)
                } else {
                    Cow::Borrowed(&piece[1..piece.len() - 1])
                });
                let frame = self.stack.last_mut().ok_or(Reject)?;
                match &mut frame.set {
                    Some(set) => {
                        if !set.insert(key) {
                            return Err(Reject);
                        }
                    }
                    None => {
                        let mine = &self.keys[frame.keys_from..];
                        if mine.contains(&key) {
                            return Err(Reject);
                        }
                        if mine.len() < LIST_MAX {
                            self.keys.push(key);
                        } else {
                            let mut set: HashSet<_> = self.keys.drain(frame.keys_from..).collect();
                            set.insert(key);
                            frame.set = Some(set);
                        }
                    }
                }
            }
            self.ws();
            if self.peek() != Some(b':') {
                return Err(Reject);
            }
            self.i += 1;
            if O::ON {
                self.out.bytes(b": ");
            }
            Ok(())
        }

        fn open(&mut self, object: bool) -> R<()> {
            if self.stack.len() >= self.max_depth {
                return Err(Reject);
            }
            self.stack.push(Frame {
                object,
                keys_from: self.keys.len(),
                set: None,
            });
            Ok(())
        }

        fn close(&mut self) {
            if let Some(frame) = self.stack.pop() {
                if frame.object && frame.set.is_none() {
                    self.keys.truncate(frame.keys_from);
                }
            }
        }

        /// One value starting at `self.i` (whitespace first is skipped),
        /// with whatever it nests; `self.i` ends just past it.
        pub fn value(&mut self) -> R<()> {
            let floor = self.stack.len();
            loop {
                // A value.
                self.ws();
                match self.peek() {
                    Some(b'"') => {
                        self.string()?;
                    }
                    Some(b'{' | b'[') => {
                        let object = self.peek() == Some(b'{');
                        let (open, close) = if object { (b'{', b'}') } else { (b'[', b']') };
                        self.i += 1;
                        self.ws();
                        if self.peek() == Some(close) {
                            if self.stack.len() >= self.max_depth {
                                return Err(Reject);
                            }
                            self.i += 1;
                            self.out.bytes(if object { b"{}" } else { b"[]" });
                        } else {
                            self.open(object)?;
                            self.out.byte(open);
                            self.newline();
                            if object {
                                self.key()?;
                            }
                            continue;
                        }
                    }
                    Some(b't') => self.literal(b"true")?,
                    Some(b'f') => self.literal(b"false")?,
                    Some(b'n') => self.literal(b"null")?,
                    _ => self.number()?,
                }
                // After a value: commas and closes until the next value.
                loop {
                    if self.stack.len() == floor {
                        return Ok(());
                    }
                    self.ws();
                    let object = self.stack.last().is_some_and(|f| f.object);
                    match self.peek() {
                        Some(b',') => {
                            self.i += 1;
                            self.out.byte(b',');
                            self.newline();
                            if object {
                                self.ws();
                                self.key()?;
                            }
                            break;
                        }
                        Some(b'}') if object => {}
                        Some(b']') if !object => {}
                        _ => return Err(Reject),
                    }
                    let close = self.s[self.i];
                    self.i += 1;
                    self.close();
                    self.newline();
                    self.out.byte(close);
                }
            }
        }

        /// A whole document: one value and nothing after it but
        /// whitespace.
        pub fn document(&mut self) -> R<()> {
            self.value()?;
            self.ws();
            if self.i != self.s.len() {
                return Err(Reject);
            }
            Ok(())
        }

        /// The object key at `self.i` (after whitespace) as raw bytes
        /// between the quotes, with whether it holds escapes, and the
        /// colon after it: for the envelope's own keys.
        pub fn raw_key(&mut self) -> R<(&'a [u8], bool)> {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(Reject);
            }
            let (piece, escaped) = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(Reject);
            }
            self.i += 1;
            Ok((&piece[1..piece.len() - 1], escaped))
        }

        /// Expect `b` (after whitespace) and step over it.
        pub fn expect(&mut self, b: u8) -> R<()> {
            self.ws();
            if self.peek() != Some(b) {
                return Err(Reject);
            }
            self.i += 1;
            Ok(())
        }

        /// Whether `b` comes next (after whitespace); stepped over if so.
        pub fn next_is(&mut self, b: u8) -> bool {
            self.ws();
            if self.peek() == Some(b) {
                self.i += 1;
                return true;
            }
            false
        }

        pub fn at_end(&mut self) -> bool {
            self.ws();
            self.i == self.s.len()
        }
    }

    /// Whether `s` is one strict JSON document nested at most `max_depth`
    /// levels, with no repeated key when `dups` is set.
    pub fn check(s: &[u8], max_depth: usize, dups: bool) -> bool {
        std::str::from_utf8(s).is_ok()
            && Scan::new(s, Nothing, 0, max_depth, dups).document().is_ok()
    }
}

/// The pieces of a stored envelope (`{"timestamp": ..., "state": ...}`),
/// found and checked by [`split_envelope`]: the JSON text of each head
/// field's value, and where the state's text lies in the input.
#[derive(Debug)]
pub struct EnvelopeParts<'a> {
    pub timestamp: &'a [u8],
    pub milestone_id: &'a [u8],
    pub version: &'a [u8],
    /// Absent in the seed's files (revision 0).
    pub revision: Option<&'a [u8]>,
    pub state: std::ops::Range<usize>,
}

impl EnvelopeParts<'_> {
    /// The head fields decoded: timestamp, milestone id, version,
    /// revision. `None` where serde_json would refuse one (a number where
    /// a string belongs, a negative revision).
    pub fn head(&self) -> Option<(String, String, String, u64)> {
        let text = |b: &[u8]| serde_json::from_slice::<String>(b).ok();
        let revision = match self.revision {
            Some(b) => serde_json::from_slice::<u64>(b).ok()?,
            None => 0,
        };
        Some((
            text(self.timestamp)?,
            text(self.milestone_id)?,
            text(self.version)?,
            revision,
        ))
    }
}

/// Check a stored envelope in one pass (the state nested at most
/// [`MAX_DEPTH`] levels, repeated keys allowed inside it as a parse into a
/// `Value` allows them) and find its pieces, without building anything.
///
/// `None` means only "not vouched for here": the input is not JSON, or is
/// an envelope this fast path does not handle (a head field missing or
/// repeated, a key written with escapes). Callers then take serde_json's
/// path, which decides and explains; so this never changes what is
/// accepted, only how fast.
pub fn split_envelope(bytes: &[u8]) -> Option<EnvelopeParts<'_>> {
    if std::str::from_utf8(bytes).is_err() {
        return None;
    }
    let mut scan = fast::Scan::new(bytes, fast::Nothing, 0, MAX_DEPTH, false);
    let mut fields: [Option<std::ops::Range<usize>>; 5] = Default::default();
    const NAMES: [&[u8]; 5] = [
        b"timestamp",
        b"milestone_id",
        b"version",
        b"revision",
        b"state",
    ];
    scan.expect(b'{').ok()?;
    if !scan.next_is(b'}') {
        loop {
            let (key, escaped) = scan.raw_key().ok()?;
            if escaped {
                return None;
            }
            scan.ws();
            let start = scan.i;
            scan.value().ok()?;
            if let Some(k) = NAMES.iter().position(|n| *n == key) {
                if fields[k].is_some() {
                    return None;
                }
                fields[k] = Some(start..scan.i);
            }
            if scan.next_is(b',') {
                continue;
            }
            scan.expect(b'}').ok()?;
            break;
        }
    }
    if !scan.at_end() {
        return None;
    }
    let [timestamp, milestone_id, version, revision, state] = fields;
    Some(EnvelopeParts {
        timestamp: &bytes[timestamp?],
        milestone_id: &bytes[milestone_id?],
        version: &bytes[version?],
        revision: revision.map(|r| &bytes[r]),
        state: state?,
    })
}

/// Whether `bytes` pass [`check_strict`] (the size limit aside), by the
/// fast scanner alone: for tests and benchmarks of it.
pub fn fast_check(bytes: &[u8]) -> bool {
    fast::check(bytes, MAX_DEPTH, true)
}

#[cfg(test)]
mod fast_tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::{arb_value, check_strict_serde, fast, split_envelope, MAX_DEPTH};

    /// serde_json's verdict on `bytes` as check_strict gave it before the
    /// fast scanner: the reference the scanner must agree with.
    fn serde_says(bytes: &[u8]) -> bool {
        check_strict_serde(bytes, "s").is_ok()
    }

    fn agree(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
        let fast = fast::check(bytes, MAX_DEPTH, true);
        prop_assert_eq!(
            fast,
            serde_says(bytes),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        // Without the repeat check it agrees with a parse into a Value.
        let loose = fast::check(bytes, MAX_DEPTH, false);
        let value = serde_json::from_slice::<Value>(bytes).is_ok();
        prop_assert_eq!(loose, value, "{:?}", String::from_utf8_lossy(bytes));
        Ok(())
    }

    /// Bytes that make JSON go wrong in the ways a scanner can miss.
    fn arb_edit() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"\\".to_vec()),
            Just(b"\\u".to_vec()),
            Just(b"\\ud800".to_vec()),
            Just(b"\\udc00".to_vec()),
            Just(b"\\ud83d\\ude00".to_vec()),
            Just(b"\\uD83D".to_vec()),
            Just(b"\\x".to_vec()),
            Just(vec![0x01]),
            Just(vec![0x1f]),
            Just(vec![0x7f]),
            Just(vec![0xff]),
            Just(vec![0xc3]),
            Just("\u{e9}".as_bytes().to_vec()),
            Just(b"-".to_vec()),
            Just(b"0".to_vec()),
            Just(b".".to_vec()),
            Just(b"e".to_vec()),
            Just(b"E+".to_vec()),
            Just(b"01".to_vec()),
            Just(b"1.".to_vec()),
            Just(b"-0".to_vec()),
            Just(b"1e999".to_vec()),
            Just(b"tru".to_vec()),
            Just(b"null".to_vec()),
            Just(b",".to_vec()),
            Just(b":".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"\"a\":1".to_vec()),
            Just(b"{".to_vec()),
            Just(b"}".to_vec()),
            Just(b"[".to_vec()),
            Just(b"]".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\t\r\n".to_vec()),
            Just(vec![0x0c]),
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 1..4),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// On valid documents, compact or pretty, and on the same with an
        /// edit spliced in anywhere, the scanner says what serde_json says.
        #[test]
        fn agrees_with_serde_json(
            v in arb_value(),
            pretty: bool,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..3, arb_edit()), 0..3),
        ) {
            let mut text = if pretty {
                serde_json::to_vec_pretty(&v).unwrap()
            } else {
                serde_json::to_vec(&v).unwrap()
            };
            agree(&text)?;
            for (at, cut, insert) in edits {
                let i = at.index(text.len() + 1);
                let end = (i + cut).min(text.len());
                text.splice(i..end, insert);
                agree(&text)?;
            }
        }

        /// Keys that differ only in how they are escaped are repeats.
        #[test]
        fn escaped_keys_are_compared_unescaped(key in "[a-z\u{e9}\u{1f600}\"\\\\]{0,5}", n in 1usize..40) {
            let plain = serde_json::to_string(&key).unwrap();
            let escaped: String = key.chars().map(|c| {
                let mut b = [0u16; 2];
                c.encode_utf16(&mut b).iter().map(|u| format!("\\u{u:04x}")).collect::<String>()
            }).collect();
            let others: Vec<String> = (0..n).map(|i| format!("\"k{i}\":0")).collect();
            let doc = format!("{{{},{plain}:1,\"{escaped}\":2}}", others.join(","));
            agree(doc.as_bytes())?;
            prop_assert!(!fast::check(doc.as_bytes(), MAX_DEPTH, true));
        }

        /// The envelope's pieces are what serde_json finds in it.
        #[test]
        fn splits_envelopes_as_serde_json_reads_them(v in arb_value(), rev in proptest::option::of(0u64..u64::MAX), extra: bool) {
            let mut env = json!({"timestamp": "t\u{e9}", "milestone_id": "m", "version": "1.0", "state": v});
            if let Some(r) = rev {
                env["revision"] = json!(r);
            }
            if extra {
                env["other"] = json!({"a": [1, 2]});
            }
            for text in [serde_json::to_vec(&env).unwrap(), serde_json::to_vec_pretty(&env).unwrap()] {
                let parts = split_envelope(&text).expect("a valid envelope is split");
                let (t, m, ver, r) = parts.head().unwrap();
                prop_assert_eq!((t.as_str(), m.as_str(), ver.as_str(), r), ("t\u{e9}", "m", "1.0", rev.unwrap_or(0)));
                let state: Value = serde_json::from_slice(&text[parts.state.clone()]).unwrap();
                prop_assert_eq!(&state, &env["state"]);
            }
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        let nest = |n: usize| "[".repeat(n) + &"]".repeat(n);
        for bad in [
            &b""[..],
            b" ",
            b"{} {}",
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{1:1}",
            b"\"\\ud800\"",
            b"\"\\udc00\"",
            b"\"\\ud800\\u0041\"",
            b"\"\\ud800x\"",
            b"\"\x01\"",
            b"\"\xff\"",
            b"01",
            b"1.",
            b"-",
            b"1e",
            b"+1",
            b".5",
            b"nul",
            b"[1 2]",
            b"\x0c1",
            b"{\"a\":1,\"a\":2}",
            b"{\"a\":1,\"\\u0061\":2}",
        ] {
            assert!(
                !fast::check(bad, MAX_DEPTH, true),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(!serde_says(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        for good in [
            &b"0"[..],
            b"-0.5e-7",
            b"1E+2",
            b"123456789012345678901234567890",
            b"1e999",
            b" \t\r\n[ ]\n",
            b"\"\\ud83d\\ude00\\u0000\\/\x7f\"",
            b"{\"a\":{\"a\":1},\"b\":[{\"a\":1},{\"a\":2}]}",
        ] {
            assert!(
                fast::check(good, MAX_DEPTH, true),
                "{:?}",
                String::from_utf8_lossy(good)
            );
            assert!(serde_says(good), "{:?}", String::from_utf8_lossy(good));
        }
        assert!(fast::check(nest(MAX_DEPTH).as_bytes(), MAX_DEPTH, true));
        assert!(!fast::check(
            nest(MAX_DEPTH + 1).as_bytes(),
            MAX_DEPTH,
            true
        ));
        assert!(!fast::check(b"[[[{}]]]", 3, true));
        assert!(fast::check(b"[[[{}]]]", 4, true));
        // Repeats past the short list, and keys of nested objects.
        let many: Vec<String> = (0..40)
            .map(|i| format!("\"k{i}\":{{\"k{i}\":0}}"))
            .collect();
        let fine = format!("{{{}}}", many.join(","));
        assert!(fast::check(fine.as_bytes(), MAX_DEPTH, true));
        let repeat = format!("{{{},\"k39\":0}}", many.join(","));
        assert!(!fast::check(repeat.as_bytes(), MAX_DEPTH, true));
    }

    #[test]
    fn envelopes_it_does_not_vouch_for_go_to_serde_json() {
        for text in [
            &br#"{"timestamp":"t","milestone_id":"m","version":"1","state":1,"state":2}"#[..],
            br#"{"timestamp":"t","milestone_id":"m","version":"1"}"#,
            br#"{"timestamp":"t","milestone_id":"m","version":"1","state":1} x"#,
            br#"{"timestamp":"t","milestone_id":"m","version":"1","state":[1,]}"#,
            br#"{"t\u0069mestamp":"t","milestone_id":"m","version":"1","state":1}"#,
            br#"[1]"#,
        ] {
            assert!(
                split_envelope(text).is_none(),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        let odd = br#"{"timestamp":1,"milestone_id":"m","version":"1","revision":-1,"state":1}"#;
        assert!(split_envelope(odd).unwrap().head().is_none());
        // Repeats inside a stored state are read, as a parse into a Value reads them.
        let dup = br#"{"timestamp":"t","milestone_id":"m","version":"1","state":{"a":1,"a":2}}"#;
        assert!(split_envelope(dup).is_some());
    }
}
