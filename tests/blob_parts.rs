//! Blobs over one request's size, uploaded in parts through the Cloudflare Worker (R2
//! multipart; docs/ASSETS.md). Run by scripts/cloudflare-conformance against `wrangler dev`
//! with `EDGEFARM_BLOB_PART_BYTES` = 5 MiB (`EDGEFARM_WORKER_URL`, `EDGEFARM_WORKER_SECRET`);
//! ignored by a plain `cargo test`, which has no Worker. Real client code: the node's and the
//! CLI's `node::transfer::Transfer`.

use edgefarm::core::blobs::FileEntry;
use edgefarm::node::client::Client;
use edgefarm::node::transfer::Transfer;
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pseudo-random bytes (a different stream per seed).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs the Worker under wrangler dev: scripts/cloudflare-conformance runs it"]
async fn a_blob_over_the_part_size_goes_up_in_parts_and_comes_back_whole() {
    let url = std::env::var("EDGEFARM_WORKER_URL").expect("EDGEFARM_WORKER_URL");
    let secret = std::env::var("EDGEFARM_WORKER_SECRET").expect("EDGEFARM_WORKER_SECRET");
    let client = Client::new(&url, &secret).expect("client");
    let t = Transfer::new(&client).expect("transfer");
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = std::process::id() as u64 ^ 0x5eed;
    // 12 MiB and 3 bytes: two whole 5 MiB parts and a short last one.
    let data = bytes((12 << 20) + 3, seed);
    let sha = hex(&Sha256::digest(&data));
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &data).expect("write");
    let entry = FileEntry {
        path: "big.bin".into(),
        sha256: sha.clone(),
        size: data.len() as u64,
    };
    let missing = t
        .missing(std::slice::from_ref(&entry))
        .await
        .expect("missing");
    assert_eq!(missing.len(), 1);
    let parts = missing[0]
        .upload
        .parts
        .clone()
        .expect("the Worker asks for parts");
    assert_eq!(parts.part_bytes, 5 << 20);
    t.upload(&file, &missing[0]).await.expect("upload in parts");
    assert!(
        t.missing(std::slice::from_ref(&entry))
            .await
            .expect("missing")
            .is_empty(),
        "the farm has it now"
    );
    let back = dir.path().join("back.bin");
    let got = t
        .download(&sha, data.len() as u64, &back)
        .await
        .expect("download");
    assert_eq!(got, data.len() as u64);
    assert_eq!(
        std::fs::read(&back).expect("read back"),
        data,
        "whole and equal"
    );

    // Parts whose bytes are not the blob's: refused at the end, nothing stored under the name.
    let other = bytes((10 << 20) + 1, seed + 1);
    let claimed = hex(&Sha256::digest(bytes((10 << 20) + 1, seed + 2)));
    let size = other.len();
    let http = reqwest::Client::new();
    let auth = format!("Bearer {secret}");
    let start: serde_json::Value = http
        .post(format!("{url}/v1/blobs/{claimed}/parts?size={size}"))
        .header("authorization", &auth)
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("started");
    let upload = start["upload"].as_str().expect("an upload id").to_string();
    let enc = percent_encoding::utf8_percent_encode(&upload, percent_encoding::NON_ALPHANUMERIC);
    let mut parts = Vec::new();
    for (i, chunk) in other.chunks(5 << 20).enumerate() {
        let r = http
            .put(format!(
                "{url}/v1/blobs/{claimed}/parts/{}?upload={enc}&size={size}",
                i + 1
            ))
            .header("authorization", &auth)
            .body(chunk.to_vec())
            .send()
            .await
            .expect("part");
        assert_eq!(r.status(), 200);
        parts.push(r.json::<serde_json::Value>().await.expect("part answer"));
    }
    let r = http
        .post(format!(
            "{url}/v1/blobs/{claimed}/parts/done?upload={enc}&size={size}"
        ))
        .header("authorization", &auth)
        .json(&serde_json::json!({"parts": parts}))
        .send()
        .await
        .expect("done");
    assert_eq!(r.status(), 400, "bytes that are not the blob's are refused");
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    assert_eq!(body["error"]["field"], "parts", "{body}");
    let r = http
        .get(format!("{url}/v1/blobs/{claimed}"))
        .header("authorization", &auth)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404, "nothing stored under the name");
    // No credentials: refused before anything is started.
    let r = http
        .post(format!("{url}/v1/blobs/{claimed}/parts?size={size}"))
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), 401);
}
