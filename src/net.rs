//! How the render node and the CLI reach a server: the one place their HTTP client is built.
//!
//! Certificates are verified by default (the bundled Mozilla roots, or only the CA of
//! `--ca-cert` for a studio's own CA, as curl's `--cacert` does). Plain `http://` carries the
//! farm secret and node tokens readable by anyone on the path, so it is refused to anything but
//! a loopback address unless `--insecure-http` says the network is trusted.
//!
//! The settings are the process's (flags of the `edgefarm` command, read once in `main`), so
//! every client the node or CLI makes follows them without passing them around.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::node::NodeError;

/// Transport flags, taken by every subcommand that talks to a server.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TransportArgs {
    /// Trust only this CA (PEM) for the server's certificate, instead of the public roots.
    #[arg(long, env = "EDGEFARM_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Allow plain http:// to a non-loopback server (the secret and tokens travel unencrypted).
    #[arg(long, env = "EDGEFARM_INSECURE_HTTP", global = true)]
    pub insecure_http: bool,
}

static TRANSPORT: OnceLock<TransportArgs> = OnceLock::new();

/// Sets the process's transport flags (once, before any client is made).
pub fn configure(args: TransportArgs) {
    let _ = TRANSPORT.set(args);
}

/// The HTTP client for the server at `base`; every call has a timeout, so a hung server never
/// stalls a heartbeat loop or the supervisor.
pub fn http_client(base: &str) -> Result<reqwest::Client, NodeError> {
    checked(
        base,
        reqwest::Client::builder().timeout(Duration::from_secs(20)),
    )
}

/// The HTTP client for blob transfers to and from `base`: no total timeout (a 1 GiB blob takes
/// what it takes), but a read that stalls for a minute fails. It follows no redirect: a
/// farm whose blobs are in a bucket answers a download with a `307` to a presigned URL, which
/// the caller follows with [`bucket_client`] and without the farm's credential.
pub fn transfer_client(base: &str) -> Result<reqwest::Client, NodeError> {
    checked(
        base,
        reqwest::Client::builder()
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none()),
    )
}

/// The HTTP client for presigned bucket URLs (S3-compatible storage the farm signs for): like
/// [`transfer_client`], but the public roots stay trusted next to `--ca-cert` (a studio CA for
/// the farm does not make a cloud bucket untrusted). Requests through it must never carry the
/// farm's credential: the URL's signature is the only authority.
pub fn bucket_client() -> Result<reqwest::Client, NodeError> {
    client(
        reqwest::Client::builder()
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none()),
        false,
    )
}

fn checked(base: &str, builder: reqwest::ClientBuilder) -> Result<reqwest::Client, NodeError> {
    let transport = TRANSPORT.get_or_init(TransportArgs::default);
    check_scheme(base, transport.insecure_http)?;
    client(builder, true)
}

/// A client with the process's transport settings; `only_ca`: `--ca-cert` replaces the public
/// roots instead of joining them.
fn client(builder: reqwest::ClientBuilder, only_ca: bool) -> Result<reqwest::Client, NodeError> {
    let transport = TRANSPORT.get_or_init(TransportArgs::default);
    let mut builder = builder
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("edgefarm/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &transport.ca_cert {
        let pem = std::fs::read(path).map_err(|e| {
            NodeError::Config(format!("--ca-cert {}: cannot read: {e}", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                NodeError::Config(format!(
                    "--ca-cert {}: no PEM certificate in the file",
                    path.display()
                ))
            })?;
        builder = builder.tls_built_in_root_certs(!only_ca);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// Refuses `http://` to a non-loopback host unless `insecure` (and anything but http/https).
fn check_scheme(base: &str, insecure: bool) -> Result<(), NodeError> {
    let url = reqwest::Url::parse(base)
        .map_err(|e| NodeError::Config(format!("url {base:?}: not a valid URL: {e}")))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if insecure || is_loopback(&url) => Ok(()),
        "http" => Err(NodeError::Config(format!(
            "refusing plain http:// to {}: the farm secret and node tokens would cross the network unencrypted. \
             Use https:// (see `edgefarm serve --tls-cert`), or pass --insecure-http (EDGEFARM_INSECURE_HTTP=true) on a network you trust",
            url.host_str().unwrap_or("?")
        ))),
        other => Err(NodeError::Config(format!(
            "url {base:?}: unsupported scheme {other:?} (use https:// or http://)"
        ))),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("");
    match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

/// Whether a request failed because the server's certificate was refused (unknown issuer,
/// wrong name, expired...): a configuration problem, not an outage worth retrying at start.
pub fn is_certificate_error(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(rustls::Error::InvalidCertificate(_)) = err.downcast_ref::<rustls::Error>() {
            return true;
        }
        // rustls errors reach reqwest inside io::Errors (nested), whose source() skips them.
        source = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => err.source(),
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_unless_insecure() {
        assert!(check_scheme("http://127.0.0.1:8080", false).is_ok());
        assert!(check_scheme("http://[::1]:8080", false).is_ok());
        assert!(check_scheme("http://localhost:8080", false).is_ok());
        assert!(check_scheme("https://farm.example", false).is_ok());
        let e = check_scheme("http://farm.example:8080", false).unwrap_err();
        assert!(
            e.is_config() && e.to_string().contains("--insecure-http"),
            "{e}"
        );
        assert!(check_scheme("http://10.0.0.2:8080", true).is_ok());
        assert!(check_scheme("ftp://farm.example", true).is_err());
    }
}
