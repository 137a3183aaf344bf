//! Blobs in an S3-compatible bucket, end to end against a real S3 server that checks SigV4
//! signatures (`s3s-fs` 0.14.1 from crates.io; scripts/test installs it under
//! `$EDGEFARM_CACHE/tools/bin`): `edgefarm serve` signs, the CLI and the node move the bytes to
//! and from the bucket directly, and what the bucket refuses never reaches the farm's records.
//!
//! The same project flow runs against the Spin component on the wasmtime test host
//! (`through_the_spin_component`, ignored by plain `cargo test`, which cannot build them; run
//! with `--ignored` by scripts/spin-conformance, which does): Spin has no blob store of its own,
//! so the bucket is how its farms carry files.
//!
//! Without `s3s-fs` these tests say SKIPPED loudly and pass, unless `EDGEFARM_REQUIRE_S3` is
//! set (scripts/test sets it), when they fail.

mod node_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgefarm::core::blobs::FileEntry;
use node_support::{
    blender, cli_json, empty_dir, free_port, make_textured_scene, wait_until, Farm, Node, NodeSpec,
    Serve, Server, SpinHost, SECRET,
};
use serde_json::{json, Value};

const AK: &str = "edgefarm-test-ak";
const SK: &str = "edgefarm-test-secret-key";
const BUCKET: &str = "farm";

/// A running `s3s-fs`; killed on drop.
struct S3 {
    url: String,
    root: tempfile::TempDir,
    child: Child,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs() -> Option<PathBuf> {
    let cache = std::env::var_os("EDGEFARM_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/edgefarm")));
    let cached = cache.map(|c| c.join("tools/bin/s3s-fs"));
    if let Some(p) = cached.filter(|p| p.is_file()) {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    })
}

impl S3 {
    /// Starts `s3s-fs` with one bucket; `None` (said loudly) when it is not installed and
    /// `EDGEFARM_REQUIRE_S3` is unset.
    async fn start() -> Option<S3> {
        let Some(bin) = s3s_fs() else {
            assert!(
                std::env::var_os("EDGEFARM_REQUIRE_S3").is_none(),
                "EDGEFARM_REQUIRE_S3 is set but s3s-fs is not installed (cargo install s3s-fs --version 0.14.1 --features binary --root $EDGEFARM_CACHE/tools)"
            );
            eprintln!("SKIPPED: s3s-fs is not installed; the S3 tests did not run (scripts/test installs it)");
            return None;
        };
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join(BUCKET)).expect("bucket dir");
        let port = free_port();
        let log = std::fs::File::create(root.path().join("s3s.log")).expect("log");
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", AK, "--secret-key", SK])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start s3s-fs");
        let s3 = S3 {
            url: format!("http://127.0.0.1:{port}"),
            root,
            child,
        };
        wait_until("s3s-fs listens", Duration::from_secs(60), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Some(s3)
    }

    /// The `EDGEFARM_S3_*` variables naming this bucket (every runtime and `edgefarm gc` read
    /// the same ones).
    fn vars(&self) -> [(&'static str, &str); 5] {
        [
            ("EDGEFARM_S3_ENDPOINT", &self.url),
            ("EDGEFARM_S3_BUCKET", BUCKET),
            ("EDGEFARM_S3_ACCESS_KEY", AK),
            ("EDGEFARM_S3_SECRET_KEY", SK),
            ("EDGEFARM_S3_REGION", "us-east-1"),
        ]
    }

    /// The `edgefarm serve` settings naming this bucket.
    fn serve_env(&self, b: node_support::Build) -> node_support::Build {
        self.vars().iter().fold(b, |b, (k, v)| b.env(k, v))
    }

    /// Where s3s-fs keeps the object of a blob.
    fn object(&self, sha256: &str) -> PathBuf {
        self.root.path().join(BUCKET).join("blobs").join(sha256)
    }

    /// The settings as the core takes them, to sign URLs in the test (at a time of its choice).
    fn bucket(&self) -> edgefarm::core::blobs::s3::Bucket {
        edgefarm::core::blobs::s3::Bucket::new(&edgefarm::core::blobs::s3::S3Settings {
            endpoint: self.url.clone(),
            region: "us-east-1".into(),
            bucket: BUCKET.into(),
            access_key: AK.into(),
            secret_key: SK.into(),
            path_style: true,
            prefix: "blobs/".into(),
        })
        .expect("bucket")
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    edgefarm::blob::hex(&Sha256::digest(bytes))
}

/// Blob files the server keeps itself (none when its blobs are in the bucket).
fn server_blob_files(server: &Server) -> Vec<PathBuf> {
    let root = server.data().join("blobs");
    let mut out = Vec::new();
    for d in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        if d.file_name() == "tmp" {
            continue;
        }
        out.extend(
            std::fs::read_dir(d.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        );
    }
    out
}

/// The dashboard of a farm with this bucket may fetch from the bucket's origin (its frame links
/// follow the farm's 307 there), and from no other.
async fn dashboard_may_reach_the_bucket(farm: &impl Farm, s3: &S3) {
    let page = reqwest::get(farm.base_url()).await.expect("GET /");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(
        csp.contains(&format!("connect-src 'self' {};", s3.url)),
        "{csp}"
    );
    assert!(
        csp.contains(&format!("img-src 'self' blob: data: {};", s3.url)),
        "{csp}"
    );
}

/// An HTTP client that follows no redirect (to see the farm's 307 itself).
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A Blender project with a linked texture, submitted with `--upload` from one directory,
/// rendered by a node whose roots are empty, and fetched back to another: every input and
/// frame goes through the bucket. A second submit of the same shot uploads nothing.
async fn a_project_goes_through_the_bucket(farm: &impl Farm, s3: &S3, blender: &Path) {
    let base = farm.work_dir().to_path_buf();
    let submitter = base.join("artist");
    std::fs::create_dir_all(submitter.join("shot")).expect("artist dir");
    make_textured_scene(blender, &submitter.join("shot/scene.blend"));

    let (project, output) = (base.join("far-project"), base.join("far-out"));
    std::fs::create_dir_all(&project).expect("project");
    std::fs::create_dir_all(&output).expect("output");
    let types = format!("[types.blender]\nprogram = {blender:?}\nthreads = 1\n");
    let node = Node::start(
        farm,
        NodeSpec {
            name: "far",
            slots: 1,
            project: &project,
            output: &output,
            types: &types,
        },
    );

    let blender_arg = blender.to_string_lossy().into_owned();
    let submit = [
        "submit",
        "blender",
        "shot/scene.blend",
        "--frames",
        "1-2",
        "--chunk",
        "1",
        "--upload",
        "--blender",
        &blender_arg,
    ];
    let submitted = cli_json(farm, &submitter, &submit, &[]);
    assert_eq!(
        submitted["upload"]["files"], 2,
        "the .blend and its texture: {submitted:#}"
    );
    let job = submitted["id"].as_str().expect("job id").to_string();
    // The manifest names the farm copy of the .blend (its paths rewritten by the pack script)
    // and the texture; the bucket holds each under its hash.
    let inputs = farm.get(&format!("/v1/jobs/{job}/inputs")).await;
    let entries = inputs["files"].as_array().expect("manifest files");
    assert_eq!(entries.len(), 2, "{inputs:#}");
    for e in entries {
        let sha = e["sha256"].as_str().expect("sha256");
        let bytes = std::fs::read(s3.object(sha))
            .unwrap_or_else(|err| panic!("{} is not in the bucket: {err}", e["path"]));
        assert_eq!(
            sha256_hex(&bytes),
            sha,
            "the bucket holds {}'s bytes",
            e["path"]
        );
    }
    farm.wait_job_explained(&job, "completed", Duration::from_secs(240), || node.log())
        .await;

    let fetched_to = base.join("fetched");
    let fetched = cli_json(
        farm,
        &base,
        &["fetch", &job, "--to", fetched_to.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(fetched["files"], 2, "both frames come back: {fetched:#}");
    for f in 1..=2 {
        let png = fetched_to.join(format!("out/frame_{f:04}.png"));
        let img = image::open(&png)
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", png.display()))
            .to_rgb8();
        let colours: std::collections::HashSet<_> = img.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 4, "frame {f} is not one flat colour");
        let sha = sha256_hex(&std::fs::read(&png).expect("png"));
        assert!(
            s3.object(&sha).is_file(),
            "frame {f} went through the bucket"
        );
    }
    for dir in [&project, &output] {
        assert!(empty_dir(dir), "the node's own roots stay empty");
    }

    // The same shot again: the farm has every file, so nothing is uploaded.
    let again = cli_json(farm, &submitter, &submit, &[]);
    assert_eq!(again["upload"]["files"], 0, "{again:#}");
    assert_eq!(again["upload"]["bytes"], 0, "{again:#}");
    assert_eq!(again["upload"]["skipped_files"], 2, "{again:#}");
}

#[tokio::test]
async fn a_project_goes_through_the_bucket_to_a_node_without_shared_disk_and_back() {
    let Some(s3) = S3::start().await else { return };
    let Some(blender) = blender() else { return };
    let server = Server::start_with(s3.serve_env(Serve::build())).await;
    a_project_goes_through_the_bucket(&server, &s3, &blender).await;
    assert!(
        server_blob_files(&server).is_empty(),
        "no blob byte was stored by the farm itself: {:?}",
        server_blob_files(&server)
    );
}

/// The Spin component signs for the bucket (with the time its host gives it) and answers the
/// downloads' 307s; the node and the CLI move the bytes.
#[tokio::test]
#[ignore = "needs the Spin component and its test host: scripts/spin-conformance runs it with --ignored"]
async fn through_the_spin_component_a_project_goes_through_the_bucket_and_back() {
    let Some(s3) = S3::start().await else { return };
    let Some(blender) = blender() else { return };
    let spin = SpinHost::start(&s3.vars()).await;
    let store = spin.get("/v1/health").await;
    assert_eq!(store["store"]["kind"], "spin_kv", "{store:#}");
    dashboard_may_reach_the_bucket(&spin, &s3).await;
    a_project_goes_through_the_bucket(&spin, &s3, &blender).await;
}

#[tokio::test]
async fn the_bucket_refuses_wrong_bytes_expired_and_tampered_urls_and_the_farm_records_nothing() {
    let Some(s3) = S3::start().await else { return };
    let server = Server::start_with(s3.serve_env(Serve::build())).await;
    dashboard_may_reach_the_bucket(&server, &s3).await;
    let http = no_redirects();
    let url = |p: &str| format!("{}{p}", server.url);
    let bytes = b"the bytes of a texture, about to travel".to_vec();
    let sha = sha256_hex(&bytes);
    let size = bytes.len() as u64;

    // No credentials: 401 on every blob route, nothing signed.
    let check = json!({"blobs": [{"sha256": sha, "size": size}]});
    let r = http
        .post(url("/v1/blobs/missing"))
        .json(&check)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = http
        .put(url(&format!("/v1/blobs/{sha}?size={size}")))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = http
        .get(url(&format!("/v1/blobs/{sha}")))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);

    let missing: Value = http
        .post(url("/v1/blobs/missing"))
        .bearer_auth(SECRET)
        .json(&check)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let up = &missing["missing"][0]["upload"];
    let put_url = up["url"].as_str().expect("url").to_string();
    assert!(
        put_url.starts_with(&s3.url),
        "a presigned bucket URL: {up:#}"
    );
    assert!(put_url.contains("X-Amz-Expires=900"), "{put_url}");
    let checksum = up["headers"]["x-amz-checksum-sha256"]
        .as_str()
        .expect("checksum header");
    assert_eq!(up["confirm"], format!("/v1/blobs/{sha}?size={size}"));

    let put = |u: String, body: Vec<u8>, checksum: Option<String>| {
        let mut req = http.put(u).body(body);
        if let Some(c) = checksum {
            req = req.header("x-amz-checksum-sha256", c);
        }
        async move {
            let r = req.send().await.expect("send");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };
    // Wrong bytes of the same length: the bucket checks them against the signed checksum.
    let mut wrong = bytes.clone();
    wrong[0] ^= 1;
    let (status, text) = put(put_url.clone(), wrong, Some(checksum.to_string())).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("BadDigest"), "{text}");
    // The right bytes without the signed header: the signature does not hold.
    let (status, text) = put(put_url.clone(), bytes.clone(), None).await;
    assert_eq!(status, 403, "{text}");
    // Another blob's name in a URL signed for this one.
    let other = sha256_hex(b"something else");
    let (status, text) = put(
        put_url.replace(&sha, &other),
        bytes.clone(),
        Some(checksum.to_string()),
    )
    .await;
    assert_eq!(status, 403, "a tampered URL: {text}");
    // A URL signed an hour ago (the core signs at ctx's time): expired.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let old = s3.bucket().put(&sha, now_ms - 3_600_000);
    let (status, text) = put(old.url, bytes.clone(), Some(checksum.to_string())).await;
    assert_eq!(status, 403, "an expired URL: {text}");
    // The farm recorded nothing: still missing, 404 to a download. (s3s-fs 0.14.1 renames the
    // body into place before it compares the checksum, so its BadDigest leaves the wrong bytes
    // under the key; AWS S3 stores nothing. Readers verify the hash either way: see below.)
    let r = http
        .get(url(&format!("/v1/blobs/{sha}")))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);

    // A confirmation must be empty and name the size.
    let r = http
        .put(url(&format!("/v1/blobs/{sha}")))
        .bearer_auth(SECRET)
        .body(bytes.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["field"], "body", "{e:#}");
    let r = http
        .put(url(&format!("/v1/blobs/{sha}")))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("send");
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["field"], "size", "{e:#}");

    // The right bytes: stored by the bucket, then confirmed and recorded.
    let (status, text) = put(put_url.clone(), bytes.clone(), Some(checksum.to_string())).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(std::fs::read(s3.object(&sha)).expect("object"), bytes);
    let r = http
        .put(url(&format!("/v1/blobs/{sha}?size={size}")))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let again: Value = http
        .post(url("/v1/blobs/missing"))
        .bearer_auth(SECRET)
        .json(&check)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(again["present"], 1, "{again:#}");

    // A download is a 307 to a short-lived presigned URL, followed without the farm's secret.
    let r = http
        .get(url(&format!("/v1/blobs/{sha}")))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 307);
    let to = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(
        to.starts_with(&s3.url) && to.contains("X-Amz-Expires=300"),
        "{to}"
    );
    let got = http.get(&to).send().await.expect("send");
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.expect("bytes").to_vec(), bytes);
    let part = http
        .get(&to)
        .header("range", "bytes=4-8")
        .send()
        .await
        .expect("send");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.bytes().await.expect("bytes").to_vec(),
        bytes[4..=8].to_vec()
    );

    // HEAD too: a 307 to a presigned HEAD (a GET URL would not do: the method is signed).
    let r = http
        .head(url(&format!("/v1/blobs/{sha}")))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 307);
    let head_to = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert_ne!(head_to, to);
    let h = http.head(&head_to).send().await.expect("send");
    assert_eq!(h.status(), 200);
    assert_eq!(h.headers()["content-length"], size.to_string().as_str());

    // The node/CLI transfer code follows the redirect and verifies the bytes.
    let transfer = edgefarm::node::transfer::Transfer::new(&server.client()).expect("transfer");
    let dest = server.dir.path().join("downloaded.part");
    let fetched = transfer
        .download(&sha, size, &dest)
        .await
        .expect("download through the bucket");
    assert_eq!(fetched, size);
    assert_eq!(std::fs::read(&dest).expect("file"), bytes);
    // And its upload follows the instruction (the bucket checks, the farm records).
    let other_bytes = b"an output frame".to_vec();
    let other_sha = sha256_hex(&other_bytes);
    let src = server.dir.path().join("frame.bin");
    std::fs::write(&src, &other_bytes).expect("write");
    let entry = FileEntry {
        path: "frame.bin".into(),
        sha256: other_sha.clone(),
        size: other_bytes.len() as u64,
    };
    let lacking = transfer
        .missing(std::slice::from_ref(&entry))
        .await
        .expect("missing");
    assert_eq!(lacking.len(), 1);
    // A file that changed since it was hashed: the bucket refuses it, the farm records nothing.
    std::fs::write(&src, b"an output framX").expect("write");
    let refused = transfer
        .upload(&src, &lacking[0])
        .await
        .expect_err("refused");
    assert!(refused.to_string().contains("BadDigest"), "{refused}");
    assert_eq!(
        transfer
            .missing(std::slice::from_ref(&entry))
            .await
            .expect("missing")
            .len(),
        1
    );
    std::fs::write(&src, &other_bytes).expect("write");
    transfer.upload(&src, &lacking[0]).await.expect("upload");
    assert!(transfer
        .missing(std::slice::from_ref(&entry))
        .await
        .expect("missing")
        .is_empty());
    assert!(server_blob_files(&server).is_empty());

    // A lying client: its wrong bytes were refused (BadDigest), yet it confirms. The farm
    // records the claim; a node's download refuses the bytes (they do not hash to the name)
    // and keeps nothing of them, so no one ever renders or fetches wrong bytes.
    let liar_bytes = b"the honest bytes of a blob".to_vec();
    let liar_sha = sha256_hex(&liar_bytes);
    let liar = FileEntry {
        path: "liar.bin".into(),
        sha256: liar_sha.clone(),
        size: liar_bytes.len() as u64,
    };
    let lacking = transfer
        .missing(std::slice::from_ref(&liar))
        .await
        .expect("missing");
    let up = &lacking[0].upload;
    let mut forged = liar_bytes.clone();
    forged[0] ^= 1;
    let mut req = http.put(&up.url).body(forged);
    for (k, v) in &up.headers {
        req = req.header(k, v);
    }
    let r = req.send().await.expect("send");
    assert_eq!(r.status(), 400, "BadDigest");
    let r = http
        .put(url(up.confirm.as_deref().expect("confirm")))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status(),
        201,
        "the farm cannot tell a lie from the truth here"
    );
    let dest = server.dir.path().join("liar.part");
    let refused = transfer
        .download(&liar_sha, liar.size, &dest)
        .await
        .expect_err("wrong bytes are refused by the reader");
    assert!(!dest.exists(), "nothing of them is kept: {refused}");

    // gc with the same bucket settings: both blobs are unreferenced; deleted from the records
    // and from the bucket.
    let data = server.data();
    let out = cli_json(
        &server,
        server.dir.path(),
        &[
            "gc",
            "--data",
            data.to_str().expect("utf-8"),
            "--older-than",
            "0s",
        ],
        &s3.vars(),
    );
    assert_eq!(out["deleted"].as_array().map(Vec::len), Some(3), "{out:#}");
    assert_eq!(
        out["freed_bytes"],
        size + other_bytes.len() as u64 + liar_bytes.len() as u64
    );
    assert!(
        !s3.object(&sha).exists() && !s3.object(&other_sha).exists(),
        "gone from the bucket"
    );
    let r = http
        .get(url(&format!("/v1/blobs/{sha}")))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404, "and from the farm's records");
}

/// A stand-in bucket that records the head of every request it gets and answers `body` (after
/// reading the request's body): to see what the node and the CLI send to a bucket.
async fn spy(body: Vec<u8>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (log, body) = (log.clone(), body.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let is_get = head.starts_with("get ");
                log.lock().expect("log").push(head);
                let answer = if is_get { body.clone() } else { Vec::new() };
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    answer.len()
                )
                .into_bytes();
                out.extend_from_slice(&answer);
                let _ = conn.write_all(&out).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn the_farms_credential_never_reaches_the_bucket() {
    let bytes = b"bytes that go to a bucket".to_vec();
    let sha = sha256_hex(&bytes);
    let (bucket_url, seen) = spy(bytes.clone()).await;
    let server = Server::start_with(
        Serve::build()
            .env("EDGEFARM_S3_ENDPOINT", &bucket_url)
            .env("EDGEFARM_S3_BUCKET", BUCKET)
            .env("EDGEFARM_S3_ACCESS_KEY", AK)
            .env("EDGEFARM_S3_SECRET_KEY", SK),
    )
    .await;
    let transfer = edgefarm::node::transfer::Transfer::new(&server.client()).expect("transfer");
    let src = server.dir.path().join("blob.bin");
    std::fs::write(&src, &bytes).expect("write");
    let entry = FileEntry {
        path: "blob.bin".into(),
        sha256: sha.clone(),
        size: bytes.len() as u64,
    };
    let lacking = transfer
        .missing(std::slice::from_ref(&entry))
        .await
        .expect("missing");
    transfer
        .upload(&src, &lacking[0])
        .await
        .expect("upload to the spy, confirmed to the farm");
    let dest = server.dir.path().join("back.part");
    transfer
        .download(&sha, entry.size, &dest)
        .await
        .expect("download through the redirect");
    assert_eq!(std::fs::read(&dest).expect("file"), bytes);
    let seen = seen.lock().expect("log").clone();
    assert_eq!(
        seen.len(),
        2,
        "one PUT and one GET reached the bucket: {seen:#?}"
    );
    assert!(seen[0].starts_with("put /farm/blobs/") && seen[1].starts_with("get /farm/blobs/"));
    assert!(
        seen[0].contains("x-amz-checksum-sha256:"),
        "the signed header is sent: {}",
        seen[0]
    );
    for head in &seen {
        assert!(
            !head.contains("authorization"),
            "no farm credential to the bucket: {head}"
        );
        assert!(!head.contains(SECRET), "{head}");
    }
}
