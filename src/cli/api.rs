//! Small helpers over the node's HTTP client for the user commands: typed answers (the shared
//! `crate::wire` types, so a field the server does not send cannot be printed), and the
//! server's own error message on failure.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::node::client::Client;

/// `GET path` → the answer's type.
pub async fn get<T: DeserializeOwned>(client: &Client, path: &str) -> anyhow::Result<T> {
    Ok(client.send(client.request(Method::GET, path)).await?)
}

/// `POST path` with a JSON body → the answer's type.
pub async fn post<B: Serialize, T: DeserializeOwned>(
    client: &Client,
    path: &str,
    body: &B,
) -> anyhow::Result<T> {
    Ok(client
        .send(client.request(Method::POST, path).json(body))
        .await?)
}

/// `GET path` → text.
pub async fn get_text(client: &Client, path: &str) -> anyhow::Result<String> {
    Ok(client.send_text(client.request(Method::GET, path)).await?)
}

/// Prints a value as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("cannot print the answer as JSON: {e}"),
    }
}
