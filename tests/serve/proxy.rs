//! Whose address a request has: a forwarded-address header counts only from a peer given with
//! `--trusted-proxy`. Seen through the nexrender façade, which records it as a job's `creator`.

use super::support::{start, Serve, SECRET};
use serde_json::{json, Value};

/// Creates a nexrender job claiming to come from 203.0.113.9; returns its `creator`.
async fn creator_with_forwarded_header(serve: &Serve, header: &str) -> Value {
    let job: Value = serve
        .http()
        .post(serve.url("/api/v1/jobs"))
        .header("nexrender-secret", SECRET)
        .header(header, "203.0.113.9")
        .json(&json!({"template": {"src": "file:///p/project.aep", "composition": "main"}}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("job json");
    job["creator"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peers_forwarded_address_is_ignored() {
    let serve = start(&[]).await;
    for header in ["x-forwarded-for", "x-real-ip"] {
        assert_eq!(
            creator_with_forwarded_header(&serve, header).await,
            "127.0.0.1",
            "{header} from a peer that is not a trusted proxy is ignored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_forwarded_address_is_used() {
    let serve = start(&["--trusted-proxy", "127.0.0.0/8"]).await;
    for header in ["x-forwarded-for", "x-real-ip"] {
        assert_eq!(
            creator_with_forwarded_header(&serve, header).await,
            "203.0.113.9",
            "{header} from a trusted proxy names the client"
        );
    }
}
