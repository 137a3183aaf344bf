//! `edgefarm tokens create|list|revoke` (issue 21): the token is the last line `create` prints
//! and works at once with the role it was given; `--json` gives {id, name, role, token};
//! `list` never shows a secret; `revoke` stops it; `edgefarm jobs` shows who submitted.

use serde_json::Value;
use std::process::Command;

#[path = "support/serve.rs"]
mod serve;

use serve::{Serve, BIN};
const SECRET: &str = "cli-tokens-secret";

/// Runs the CLI against `base` with `secret`: (exit code, stdout, stderr).
fn cli(base: &str, secret: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("EDGEFARM_URL", base)
        .env("EDGEFARM_SECRET", secret)
        .env("HOME", "/nonexistent")
        .output()
        .expect("run edgefarm");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_created_listed_used_and_revoked_from_the_cli() {
    let server = Serve::build()
        .memory()
        .secret(SECRET)
        .env("EDGEFARM_LOG", "warn")
        .start()
        .await;
    let base = server.base.clone();
    let (code, out, err) = cli(
        &base,
        SECRET,
        &[
            "tokens",
            "create",
            "--name",
            "anna",
            "--role",
            "submitter",
            "--queue",
            "shots",
            "--expires",
            "90d",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let anna = out.lines().last().unwrap_or_default().trim().to_string();
    assert!(
        anna.starts_with("eft_"),
        "the token is the last line: {out}"
    );

    let (code, out, err) = cli(
        &base,
        SECRET,
        &[
            "tokens", "create", "--name", "wall", "--role", "viewer", "--json",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let created: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let keys: Vec<&String> = created
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["id", "name", "role", "token"], "{out}");
    assert_eq!(created["role"], "viewer");
    let viewer = created["token"].as_str().unwrap_or_default().to_string();
    let viewer_id = created["id"].as_str().unwrap_or_default().to_string();

    // Anna submits within her queue; `edgefarm jobs` shows her name.
    let (code, out, err) = cli(
        &base,
        &anna,
        &[
            "submit",
            "command",
            "touchframe",
            "--queue",
            "shots",
            "--frames",
            "1-2",
            "--",
            "{frame}",
        ],
    );
    assert_eq!(code, Some(0), "anna submits: {out}{err}");
    let (code, out, err) = cli(&base, &viewer, &["jobs"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("BY") && out.contains("anna"), "{out}");
    // The viewer cannot submit.
    let (code, out, err) = cli(
        &base,
        &viewer,
        &["submit", "command", "touchframe", "--queue", "shots"],
    );
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(err.contains("viewer"), "the refusal names the role: {err}");

    let (code, out, err) = cli(&base, SECRET, &["tokens", "list"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("anna") && out.contains("submitter") && out.contains("shots"),
        "{out}"
    );
    assert!(
        out.contains("in 89 d") || out.contains("in 90 d"),
        "anna's expiry: {out}"
    );
    let anna_secret = anna.rsplit('_').next().unwrap_or_default();
    assert!(!out.contains(anna_secret), "no secret in the list: {out}");

    let (code, out, err) = cli(&base, SECRET, &["tokens", "revoke", &viewer_id]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = cli(&base, &viewer, &["jobs"]);
    assert_eq!(code, Some(1), "a revoked token stops: {err}");
    // Anna, a submitter, may not manage tokens.
    let (code, _, err) = cli(&base, &anna, &["tokens", "list"]);
    assert_eq!(code, Some(1), "{err}");
    drop(server);
}
