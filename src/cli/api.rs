//! Small helpers over the node's HTTP client for the user commands: JSON in, JSON out, and the
//! server's own error message on failure.

use reqwest::Method;
use serde_json::Value;

use crate::node::client::Client;

/// `GET path` → JSON.
pub async fn get(client: &Client, path: &str) -> anyhow::Result<Value> {
    Ok(client.send(client.request(Method::GET, path)).await?)
}

/// `POST path` with a JSON body → JSON.
pub async fn post(client: &Client, path: &str, body: &Value) -> anyhow::Result<Value> {
    Ok(client
        .send(client.request(Method::POST, path).json(body))
        .await?)
}

/// `GET path` → text.
pub async fn get_text(client: &Client, path: &str) -> anyhow::Result<String> {
    Ok(client.send_text(client.request(Method::GET, path)).await?)
}

/// Prints a value as pretty JSON.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A string field of a JSON object, or "" (for display only).
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An integer field of a JSON object, or 0 (for display only).
pub fn n(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}
