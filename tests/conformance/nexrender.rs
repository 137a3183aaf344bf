//! The nexrender façade (`/api/v1`): nexrender-server's protocol (`protocol.rs`), with
//! exclusive pickups and leases that lapse when an executor goes silent (`leases.rs`). Jobs
//! carry a tag of their own per farm so cases sharing one server (`EDGEFARM_URL`) never pick
//! each other's jobs.

mod leases;
mod protocol;
mod reports;

use crate::harness::{Farm, Resp};
use serde_json::{json, Value};

/// A tag only this farm's jobs carry (`a-z0-9` survive nexrender's tag rule; tags match with
/// their case, so the lower-case letters alone are enough).
pub(crate) fn own_tag(f: &Farm) -> String {
    f.queue()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .collect()
}

/// A request as `@nexrender/api` sends it: the secret in `nexrender-secret`, the executor name
/// in `nexrender-name`.
pub(crate) async fn nx(
    f: &Farm,
    method: &str,
    path: &str,
    body: Option<Value>,
    name: Option<&str>,
) -> Resp {
    let secret = f.secret();
    let mut headers = vec![("nexrender-secret", secret.as_str())];
    if let Some(n) = name {
        headers.push(("nexrender-name", n));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    f.raw(method, &format!("/api/v1{path}"), None, bytes, &headers)
        .await
}

/// Creates a valid job with this farm's tag plus `extra` fields; returns it.
pub(crate) async fn create(f: &Farm, extra: Value) -> Value {
    let mut job = json!({"template": {"src": "file:///p/project.aep", "composition": "main"},
                         "tags": own_tag(f)});
    if let (Some(j), Some(e)) = (job.as_object_mut(), extra.as_object()) {
        j.extend(e.clone());
    }
    let r = nx(f, "POST", "/jobs", Some(job), None).await;
    assert_eq!(
        r.status,
        200,
        "create: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

pub(crate) async fn pickup(f: &Farm, tags: &str, name: &str) -> Value {
    let r = nx(f, "GET", &format!("/jobs/pickup/{tags}"), None, Some(name)).await;
    assert_eq!(
        r.status, 200,
        "pickup answers 200 with a JSON body, even when empty"
    );
    r.json()
}

pub(crate) async fn put(f: &Farm, uid: &Value, body: Value, name: &str) -> Resp {
    let uid = uid.as_str().unwrap_or_default();
    nx(f, "PUT", &format!("/jobs/{uid}"), Some(body), Some(name)).await
}

pub(crate) async fn fetch(f: &Farm, uid: &Value) -> Value {
    let uid = uid.as_str().unwrap_or_default();
    nx(f, "GET", &format!("/jobs/{uid}"), None, None)
        .await
        .json()
}
