//! TLS end to end: a CA and a server certificate made at test time, `serve --tls-cert`, a real
//! node rendering over https:// with `--ca-cert`, a node without the CA refusing to start, and a
//! renewed certificate served after SIGHUP while the node carries on.

use super::support::{node_log, start_node, wait_until, Serve};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

fn make_ca() -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "edgefarm test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("CA certificate");
    (Issuer::new(params, key), cert.pem())
}

/// A server certificate for 127.0.0.1 signed by `ca`, written to `dir`/cert.pem and key.pem;
/// returns its DER.
fn issue_server_cert(ca: &Issuer<'static, KeyPair>, dir: &Path) -> Vec<u8> {
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "edgefarm test server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, ca).expect("server certificate");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert.pem");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key.pem");
    cert.der().to_vec()
}

fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA pem"))
        .tls_info(true)
        .build()
        .expect("client")
}

/// The certificate a new connection to `url` is shown.
async fn served_certificate(ca_pem: &str, url: &str) -> Option<Vec<u8>> {
    let resp = client_trusting(ca_pem).get(url).send().await.ok()?;
    let info = resp.extensions().get::<reqwest::tls::TlsInfo>()?;
    info.peer_certificate().map(<[u8]>::to_vec)
}

async fn wait_exit(child: &mut Child, within: Duration, log: impl Fn() -> String) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "the node did not exit in time: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_completed(serve: &Serve, job: &str) {
    wait_until("the job completes", Duration::from_secs(60), || async {
        serve.job_state(job).await == "completed"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_renders_over_https_and_a_renewed_certificate_is_served_after_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, ca_pem) = make_ca();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca_pem).expect("ca.pem");
    let first = issue_server_cert(&ca, dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let flags = [
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
    ];
    let serve = Serve::build()
        .poll_ms(200)
        .https(client_trusting(&ca_pem))
        .args(&flags)
        .start_in(dir)
        .await;
    let root = serve.dir.path().to_path_buf();
    let health = serve.url("/v1/health");
    assert_eq!(served_certificate(&ca_pem, &health).await, Some(first));

    // Without the studio's CA the node does not trust the server, and says why.
    let mut untrusting = start_node(&root, &serve.base, "untrusting", &[]);
    let code = wait_exit(&mut untrusting, Duration::from_secs(60), || {
        node_log(&root, "untrusting")
    })
    .await;
    let log = node_log(&root, "untrusting");
    assert_eq!(
        code,
        Some(2),
        "a refused certificate is a config error: {log}"
    );
    assert!(
        log.contains("certificate") && log.contains("UnknownIssuer"),
        "the message names the certificate problem: {log}"
    );

    let ca_flag = ca_path.to_str().expect("path");
    let mut node = start_node(&root, &serve.base, "trusting", &["--ca-cert", ca_flag]);
    let job = serve.submit("1-3", "ok").await;
    wait_completed(&serve, &job).await;

    // certbot renews: new files, then SIGHUP. New connections get the new certificate.
    let renewed = issue_server_cert(&ca, &root);
    serve.signal(libc::SIGHUP);
    wait_until(
        "new connections are shown the renewed certificate",
        Duration::from_secs(20),
        || async { served_certificate(&ca_pem, &health).await.as_ref() == Some(&renewed) },
    )
    .await;
    assert!(
        node.try_wait().expect("try_wait").is_none(),
        "the node was not dropped: {}",
        node_log(&root, "trusting")
    );
    let job = serve.submit("4-6", "ok").await;
    wait_completed(&serve, &job).await;
    assert!(
        serve.log().contains("TLS certificate reloaded"),
        "{}",
        serve.log()
    );
    let _ = node.kill();
    let _ = node.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_remote_server_is_refused_unless_insecure_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 192.0.2.1 (TEST-NET-1): never reached; the URL alone is refused.
    let mut node = start_node(dir.path(), "http://192.0.2.1:8080", "plain", &[]);
    let code = wait_exit(&mut node, Duration::from_secs(30), || {
        node_log(dir.path(), "plain")
    })
    .await;
    let log = node_log(dir.path(), "plain");
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("refusing plain http://") && log.contains("--insecure-http"),
        "{log}"
    );
}
