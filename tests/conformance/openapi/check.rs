//! Checks answers against the OpenAPI description: which path template, method, status and
//! content type each answer falls under, and whether its JSON body matches the schema there.

use crate::harness::{Farm, Resp};
use serde_json::{json, Value};
use std::cell::RefCell;

/// Answers seen, checked against the description as they come.
pub struct Tour<'f> {
    pub farm: &'f Farm,
    pub doc: Value,
    pub problems: RefCell<Vec<String>>,
    pub checked: RefCell<usize>,
}

/// The path template of the description that `path` falls under (most literal segments wins).
fn template(doc: &Value, path: &str) -> Option<String> {
    let segs: Vec<&str> = path
        .split('?')
        .next()?
        .trim_matches('/')
        .split('/')
        .collect();
    let mut best: Option<(usize, String)> = None;
    for t in doc["paths"].as_object()?.keys() {
        let ts: Vec<&str> = t.trim_matches('/').split('/').collect();
        if ts.len() != segs.len() {
            continue;
        }
        let fits = ts
            .iter()
            .zip(&segs)
            .all(|(t, s)| t.starts_with('{') || t == s);
        let literals = ts.iter().filter(|t| !t.starts_with('{')).count();
        if fits && best.as_ref().is_none_or(|(n, _)| literals > *n) {
            best = Some((literals, t.clone()));
        }
    }
    best.map(|(_, t)| t)
}

/// A JSON pointer token (`/` and `~` escaped), percent-encoded for a URI fragment.
fn token(s: &str) -> String {
    s.replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

/// Where `value` breaks the schema that `pointer` names inside the description.
pub fn schema_errors(doc: &Value, pointer: &str, value: &Value) -> Vec<String> {
    let mut root = doc.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["$ref"] = json!(pointer);
    match jsonschema::validator_for(&root) {
        Ok(v) => v
            .iter_errors(value)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect(),
        Err(e) => vec![format!(
            "the description does not compile at {pointer}: {e}"
        )],
    }
}

impl Tour<'_> {
    /// Checks one answer against the description; returns it for the tour to go on with.
    fn check(&self, method: &str, path: &str, r: Resp) -> Resp {
        *self.checked.borrow_mut() += 1;
        let mut problems = self.problems.borrow_mut();
        let what = format!("{method} {path} → {}", r.status);
        let Some(t) = template(&self.doc, path) else {
            problems.push(format!("{what}: path not described"));
            return r;
        };
        let m = method.to_ascii_lowercase();
        let status = r.status.to_string();
        if self.doc["paths"][&t][&m].is_null() {
            // A method a path does not have: OpenAPI cannot list it, the API answers 405.
            if r.status != 405 {
                problems.push(format!(
                    "{what}: method not described, and the answer is not 405"
                ));
            }
            let errors = self.errors(&r, "#/components/schemas/Error");
            problems.extend(errors.into_iter().map(|e| format!("{what}: {e}")));
            return r;
        }
        let described = &self.doc["paths"][&t][&m]["responses"][&status];
        if described.is_null() {
            problems.push(format!("{what}: status not described under {t} {m}"));
            return r;
        }
        let ct = r.header("content-type").unwrap_or_default();
        let ct = ct.split(';').next().unwrap_or("").trim().to_string();
        if r.body.is_empty() && ct.is_empty() {
            if described.get("content").is_some() {
                problems.push(format!(
                    "{what}: empty answer, but the description has content"
                ));
            }
            return r;
        }
        if described["content"][&ct].is_null() {
            problems.push(format!("{what}: content type {ct:?} not described"));
            return r;
        }
        if ct != "application/json" {
            return r;
        }
        let pointer = format!(
            "#/paths/{}/{m}/responses/{status}/content/{}/schema",
            token(&t),
            token(&ct)
        );
        let errors = self.errors(&r, &pointer);
        problems.extend(errors.into_iter().map(|e| format!("{what}: {e}")));
        r
    }

    /// Where the JSON body of `r` breaks the schema at `pointer` in the description.
    fn errors(&self, r: &Resp, pointer: &str) -> Vec<String> {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        schema_errors(&self.doc, pointer, &body)
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.check(method, path, self.farm.call(method, path, body).await)
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.check(
            method,
            path,
            self.farm.raw(method, path, token, body, headers).await,
        )
    }
}
