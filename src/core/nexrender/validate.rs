//! nexrender's job rules (those of `@nexrender/types`' `validate`), answered as a 400 naming
//! the field, checked on create and again on every PUT, so a job a worker cannot render is
//! refused at the door instead of failing on a render node later; and the size of a whole job,
//! which must stay within what the runtime keeps (`size`, a 413).

use super::Settings;
use crate::core::error::{Error, Result};
use crate::core::validate::is_ident;
use serde_json::{Map, Value};

fn present(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::Bool(true)) | Some(Value::Array(_)) | Some(Value::Object(_)) => true,
    }
}

fn require(cond: bool, field: &str, message: &str) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::field(field, message))
    }
}

/// A uid edgefarm can key a job by: nanoid's alphabet, 1-64 characters.
pub fn uid(uid: &Value) -> Result<String> {
    match uid.as_str() {
        Some(s) if is_ident(s, 64) => Ok(s.to_string()),
        _ => Err(Error::field(
            "uid",
            "uid must be 1-64 characters of A-Z, a-z, 0-9, `_` or `-`",
        )),
    }
}

/// Checks a whole job (defaults already filled).
pub fn job(job: &Map<String, Value>) -> Result<()> {
    uid(job.get("uid").unwrap_or(&Value::Null))?;
    require(present(job.get("state")), "state", "job must have state")?;
    match job.get("tags") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => {
            return Err(Error::field(
                "tags",
                "tags must be a comma-separated string, e.g. \"gpu,fast\"",
            ))
        }
    }
    let template = job.get("template");
    require(
        template.is_some_and(Value::is_object),
        "template",
        "job must have template object defined",
    )?;
    let t = |k: &str| template.and_then(|t| t.get(k));
    require(
        present(t("src")),
        "template.src",
        "job must have template.src defined",
    )?;
    require(
        present(t("composition")),
        "template.composition",
        "job must have template.composition defined",
    )?;
    let assets = match job.get("assets") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(Error::field("assets", "job assets must be an array")),
    };
    for (i, asset) in assets.iter().enumerate() {
        self::asset(&format!("assets[{i}]"), asset)?;
    }
    let actions = job.get("actions");
    require(
        actions.is_some_and(Value::is_object),
        "actions",
        "job must have actions defined",
    )?;
    for stage in ["predownload", "postdownload", "prerender", "postrender"] {
        let list = match actions.and_then(|a| a.get(stage)) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(l)) => l,
            Some(_) => {
                return Err(Error::field(
                    &format!("actions.{stage}"),
                    format!("actions.{stage} must be an array"),
                ))
            }
        };
        for (i, action) in list.iter().enumerate() {
            let field = format!("actions.{stage}[{i}]");
            require(present(Some(action)), &field, "job action must be defined")?;
            require(
                present(action.get("module")),
                &format!("{field}.module"),
                "job action must have module defined",
            )?;
        }
    }
    Ok(())
}

fn asset(field: &str, asset: &Value) -> Result<()> {
    require(asset.is_object(), field, "job asset should not be empty")?;
    let kind = asset.get("type").and_then(Value::as_str).unwrap_or("");
    require(
        !kind.is_empty(),
        &format!("{field}.type"),
        "job asset must have type defined",
    )?;
    let has = |k: &str| present(asset.get(k));
    let layer = has("layerName") || has("layerIndex");
    let field_of = |k: &str| format!("{field}.{k}");
    match kind {
        "image" | "audio" | "video" => {
            require(
                has("src"),
                &field_of("src"),
                &format!("job asset[{kind}] must have src defined"),
            )?;
            require(
                layer,
                &field_of("layerName"),
                &format!("job asset[{kind}] must have either layerName or layerIndex defined"),
            )
        }
        "data" => {
            require(
                layer,
                &field_of("layerName"),
                &format!("job asset[{kind}] must have either layerName or layerIndex defined"),
            )?;
            // nexrender checks `value !== undefined`: an explicit null counts as a value.
            let value = asset.get("value").is_some();
            require(
                value || has("expression"),
                &field_of("value"),
                &format!("job asset[{kind}] must have value and/or expression defined"),
            )?;
            require(
                has("property"),
                &field_of("property"),
                &format!("job asset[{kind}] must have property defined"),
            )
        }
        "script" | "static" => require(
            has("src"),
            &field_of("src"),
            &format!("job asset[{kind}] must have src defined"),
        ),
        other => Err(Error::field(
            &field_of("type"),
            format!("unknown job asset type: {other}"),
        )),
    }
}

/// Bytes of `job` as JSON, counted without building the text.
fn json_len(job: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut n, job);
    n.0
}

/// 413 when a job (as created, or as a PUT's merge makes it) is over the body limit: the limit
/// is what the runtime's store can keep of one job, so a merge may not grow past it either.
pub fn size(job: &Map<String, Value>, settings: &Settings) -> Result<()> {
    let len = json_len(job);
    if len > settings.body_bytes {
        return Err(Error::TooLarge(format!(
            "the nexrender job would be {len} bytes of JSON, over this server's limit of {} bytes ({})",
            settings.body_bytes,
            super::BODY_LIMIT_SETTING
        )));
    }
    Ok(())
}
