//! Small helpers to read requests and build answers, so handlers speak in types.

use super::error::{Error, Result};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;

/// A JSON answer.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Bytes> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Bytes::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A plain-text answer.
pub fn text(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<Bytes> {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// An empty answer.
pub fn empty(status: StatusCode) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = status;
    resp
}

/// Decodes a JSON body, naming the field at fault when serde can tell.
pub fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad("the request body is empty; send a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else {
            inner.to_string()
        };
        // serde reports missing and unknown fields at their parent; name the field itself.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|pre| {
                let rest = message.split_once(pre)?.1;
                Some(rest.split('`').next()?.to_string())
            });
        let path = match (path.as_str(), named) {
            ("" | ".", Some(f)) => f,
            (p, Some(f)) if p != f && !p.ends_with(&format!(".{f}")) => format!("{p}.{f}"),
            (p, _) => p.to_string(),
        };
        if path.is_empty() || path == "." {
            Error::bad(message)
        } else {
            Error::field(&path, format!("{path}: {message}"))
        }
    })
}

/// Decodes an optional JSON body: empty means `T::default()`.
pub fn body_or_default<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    body(bytes)
}

/// Query-string parameters, percent-decoded (last one wins).
pub fn query(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k), decode(v));
    }
    out
}

/// Percent-decodes a path segment or query part (`+` is a space in queries).
pub fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A numeric query parameter within bounds.
pub fn query_u64(q: &HashMap<String, String>, name: &str, default: u64, max: u64) -> Result<u64> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(Error::field(
                name,
                format!("{name} must be a whole number from 0 to {max}"),
            )),
        },
    }
}
