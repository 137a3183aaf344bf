//! Runs the Node test project in `tests/nexrender/` (the stock `@nexrender/api` client and
//! `@nexrender/worker` against a spawned `edgefarm serve`) so one `cargo test` runs it too.
//! Installs the pinned packages with `npm ci` when `node_modules` is missing or older than the
//! lock file (npm's download cache lives under `$EDGEFARM_CACHE`, default `~/.cache/edgefarm`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nexrender")
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: cannot start it ({e}); Node.js 20+ and npm are needed")
    });
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn installed_version(dir: &Path, package: &str) -> String {
    let manifest = dir.join("node_modules").join(package).join("package.json");
    std::fs::read(manifest)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["version"].as_str().map(String::from))
        .unwrap_or_else(|| "?".into())
}

#[test]
fn stock_nexrender_clients_work_against_edgefarm() {
    let dir = project();
    let marker = dir.join("node_modules/.package-lock.json");
    let stale = match (modified(&marker), modified(&dir.join("package-lock.json"))) {
        (Some(installed), Some(locked)) => installed < locked,
        _ => true,
    };
    if stale {
        let cache = std::env::var("EDGEFARM_CACHE")
            .map(PathBuf::from)
            .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cache/edgefarm")))
            .unwrap_or_else(|_| std::env::temp_dir().join("edgefarm-cache"))
            .join("npm");
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--cache"])
                .arg(&cache)
                .current_dir(&dir),
            "npm ci in tests/nexrender",
        );
    }
    let node = run(Command::new("node").arg("--version"), "node --version");
    let out = run(
        Command::new("node")
            .args(["--test", "--test-concurrency=1", "--test-reporter=tap"])
            .env("EDGEFARM_BIN", env!("CARGO_BIN_EXE_edgefarm"))
            // Always the binary just built: the tests' external-server mode (EDGEFARM_URL, used
            // by scripts/cloudflare-conformance) deletes nexrender jobs, so a farm URL exported
            // for the CLI must not turn it on.
            .env_remove("EDGEFARM_URL")
            .env_remove("EDGEFARM_SECRET")
            .current_dir(&dir),
        "node --test in tests/nexrender",
    );
    let tap = String::from_utf8_lossy(&out.stdout);
    let count = |key: &str| {
        tap.lines()
            .find_map(|l| l.strip_prefix(&format!("# {key} ")))
            .unwrap_or("?")
            .to_string()
    };
    let (pass, fail) = (count("pass"), count("fail"));
    assert_eq!(fail, "0", "node tests failed:\n{tap}");
    // Straight to stderr (not captured by the test harness): say which versions ran.
    let _ = writeln!(
        std::io::stderr(),
        "nexrender: node {} · @nexrender/api {} · @nexrender/worker {} · @nexrender/core {}: {pass} node tests passed",
        String::from_utf8_lossy(&node.stdout).trim(),
        installed_version(&dir, "@nexrender/api"),
        installed_version(&dir, "@nexrender/worker"),
        installed_version(&dir, "@nexrender/core"),
    );
}
