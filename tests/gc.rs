//! `edgefarm gc` on a real server's data dir, run while the server runs: blobs no job
//! references and older than `--older-than` go (record and file), a blob a queued job needs
//! stays whatever its age, a young blob stays, `--dry-run` deletes nothing.

mod node_support;

use std::path::Path;
use std::process::Command;

use edgefarm::core::blobs::FileEntry;
use node_support::{Server, BIN, SECRET};
use serde_json::{json, Value};

fn gc(data: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("gc")
        .arg("--data")
        .arg(data)
        .args(args)
        .arg("--json")
        .env_remove("EDGEFARM_S3_ENDPOINT")
        .output()
        .expect("run edgefarm gc");
    assert!(
        out.status.success(),
        "edgefarm gc {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn deleted(report: &Value) -> Vec<String> {
    let mut v: Vec<String> = report["deleted"]
        .as_array()
        .expect("deleted")
        .iter()
        .map(|d| d["sha256"].as_str().expect("sha").to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn gc_deletes_unreferenced_old_blobs_and_never_a_queued_jobs() {
    let server = Server::start().await;
    let dir = server.dir.path().to_path_buf();
    let transfer = edgefarm::node::transfer::Transfer::new(&server.client()).expect("transfer");
    let mut blobs = Vec::new();
    for (name, size) in [("needed", 3000), ("orphan", 5000), ("of-deleted-job", 7000)] {
        let path = dir.join(name);
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 + name.len()) as u8).collect();
        std::fs::write(&path, &bytes).expect("write");
        let (sha256, size) = edgefarm::node::transfer::hash_file(&path).expect("hash");
        let entry = FileEntry {
            path: format!("{name}.bin"),
            sha256,
            size,
        };
        for b in transfer
            .missing(std::slice::from_ref(&entry))
            .await
            .expect("missing")
        {
            transfer.upload(&path, &b).await.expect("upload");
        }
        blobs.push(entry);
    }
    let [needed, orphan, of_deleted] = [&blobs[0], &blobs[1], &blobs[2]];
    let file = |e: &FileEntry| {
        server
            .data()
            .join(format!("blobs/{}/{}", &e.sha256[..2], e.sha256))
    };
    // A queued job (no node) needs one blob; another job names one and is deleted.
    let cmd = |e: &FileEntry| {
        json!({"type": "command", "params": {"program": "cat", "args": [e.path]},
               "inputs": [e]})
    };
    let queued = server.submit(cmd(needed)).await;
    let gone = server.submit(cmd(of_deleted)).await;
    let http = reqwest::Client::new();
    let r = http
        .delete(format!("{}/v1/jobs/{gone}", server.url))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success(), "{}", r.status());

    // Young: nothing goes.
    let young = gc(&server.data(), &["--older-than", "1h"]);
    assert!(deleted(&young).is_empty(), "{young:#}");
    assert_eq!(young["kept_young"], 2, "{young:#}");

    // Dry run: says what would go, deletes nothing.
    let dry = gc(&server.data(), &["--older-than", "0s", "--dry-run"]);
    let mut want = vec![orphan.sha256.clone(), of_deleted.sha256.clone()];
    want.sort();
    assert_eq!(deleted(&dry), want, "{dry:#}");
    assert_eq!(dry["freed_bytes"], 12_000);
    assert!(file(orphan).is_file() && file(of_deleted).is_file());

    let done = gc(&server.data(), &["--older-than", "0s"]);
    assert_eq!(deleted(&done), want, "{done:#}");
    assert_eq!(done["freed_bytes"], 12_000);
    assert_eq!(done["kept_referenced"], 1);
    assert!(
        !file(orphan).exists() && !file(of_deleted).exists(),
        "files deleted"
    );
    assert!(file(needed).is_file(), "the queued job's blob stays");
    // The farm knows they are gone (asks for them again) and still serves the needed one.
    let lacking = transfer.missing(&blobs).await.expect("missing");
    let mut lacking: Vec<String> = lacking.into_iter().map(|m| m.sha256).collect();
    lacking.sort();
    assert_eq!(lacking, want);
    let r = http
        .get(format!("{}/v1/blobs/{}", server.url, needed.sha256))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let job: Value = server.get(&format!("/v1/jobs/{queued}")).await;
    assert_eq!(job["state"], "queued", "{job:#}");

    // A blob file whose record is missing (a crash between the two) goes by its file's age.
    let stray = dir.join("stray");
    std::fs::write(&stray, b"stray bytes").expect("write");
    let (sha, _) = edgefarm::node::transfer::hash_file(&stray).expect("hash");
    let at = server.data().join(format!("blobs/{}/{sha}", &sha[..2]));
    std::fs::create_dir_all(at.parent().expect("parent")).expect("dir");
    std::fs::copy(&stray, &at).expect("copy");
    let kept = gc(&server.data(), &["--older-than", "1h"]);
    assert!(deleted(&kept).is_empty() && at.is_file(), "{kept:#}");
    let swept = gc(&server.data(), &["--older-than", "0s"]);
    assert_eq!(deleted(&swept), vec![sha], "{swept:#}");
    assert!(!at.exists());
}
