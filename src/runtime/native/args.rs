//! Flags of `edgefarm serve`; each also reads an environment variable.

use std::path::PathBuf;

/// Flags of `edgefarm serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "EDGEFARM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Data directory for the embedded SQLite store.
    #[arg(long, env = "EDGEFARM_DATA", default_value = "edgefarm-data")]
    pub data: PathBuf,
    /// Keep everything in memory (nothing survives a restart).
    #[arg(long)]
    pub memory: bool,
    /// Farm secret; generated and kept in the data dir when absent.
    #[arg(long, env = "EDGEFARM_SECRET")]
    pub secret: Option<String>,
    /// Lease length handed to nodes, in ms.
    #[arg(long, env = "EDGEFARM_LEASE_MS", default_value_t = 60_000)]
    pub lease_ms: u64,
    /// Heartbeat interval handed to nodes, in ms.
    #[arg(long, env = "EDGEFARM_HEARTBEAT_MS", default_value_t = 15_000)]
    pub heartbeat_ms: u64,
    /// Poll interval handed to nodes, in ms.
    #[arg(long, env = "EDGEFARM_POLL_MS", default_value_t = 2_000)]
    pub poll_ms: u64,
    /// nexrender façade: pickup order (oldest-first, newest-first, random, priority).
    #[arg(
        long,
        env = "EDGEFARM_NEXRENDER_ORDERING",
        default_value = "oldest-first"
    )]
    pub nexrender_ordering: crate::core::nexrender::Ordering,
    /// nexrender façade: ms of executor silence after which its job is queued again.
    #[arg(long, env = "EDGEFARM_NEXRENDER_TIMEOUT_MS", default_value_t = 600_000)]
    pub nexrender_timeout_ms: u64,
    /// nexrender façade: leases before a job whose executors keep going silent ends in error.
    #[arg(long, env = "EDGEFARM_NEXRENDER_MAX_ATTEMPTS", default_value_t = 3)]
    pub nexrender_max_attempts: u32,
    /// nexrender façade: largest /api/v1 request body and nexrender job, bytes (nexrender-server
    /// takes 100 MiB; jobs carry inline data: assets).
    #[arg(long, env = "EDGEFARM_NEXRENDER_BODY_BYTES", default_value_t = crate::core::nexrender::DEFAULT_BODY_BYTES)]
    pub nexrender_body_bytes: usize,
    /// Failed authentications one client address may make per minute before it is answered
    /// 429 until the minute ends (0: no limit).
    #[arg(long, env = "EDGEFARM_AUTH_FAILURES_PER_MINUTE", default_value_t = crate::core::auth_limit::AuthLimit::default().failures)]
    pub auth_failures_per_minute: u32,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// Webhooks (docs/WEBHOOKS.md): receivers told about every job, and the farm's rules for all
/// receivers (jobs name their own with `webhooks` in the spec).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WebhookArgs {
    /// A receiver told when any job completes, fails or is canceled (repeat for more).
    #[arg(long = "webhook", env = "EDGEFARM_WEBHOOKS", value_delimiter = ',')]
    pub urls: Vec<String>,
    /// The signing secret of the --webhook receivers: whsec_ and the base64 of 24 to 64 bytes.
    #[arg(long, env = "EDGEFARM_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Allow receivers on loopback and private addresses (refused by default: a submitter could
    /// otherwise make the farm call its own network).
    #[arg(long, env = "EDGEFARM_WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: bool,
    /// Delay before the first retry of a failed delivery, ms; each next one is 4 times longer,
    /// up to 720 times this.
    #[arg(long, env = "EDGEFARM_WEBHOOK_FIRST_RETRY_MS", default_value_t = 5_000)]
    pub webhook_first_retry_ms: u64,
    /// Attempts per event and receiver before it is given up.
    #[arg(long, env = "EDGEFARM_WEBHOOK_ATTEMPTS", default_value_t = 12)]
    pub webhook_attempts: u32,
}

impl WebhookArgs {
    /// The core's settings, each farm receiver checked like a job's.
    pub fn settings(&self) -> anyhow::Result<crate::core::webhooks::Settings> {
        use crate::core::webhooks::{target, Settings};
        let mut s = Settings {
            farm: Vec::new(),
            allow_private: self.webhooks_allow_private,
            first_retry_ms: self.webhook_first_retry_ms.max(10),
            attempts: self.webhook_attempts.clamp(1, 100),
        };
        for (i, url) in self.urls.iter().enumerate() {
            let secret = self.webhook_secret.clone().ok_or_else(|| {
                anyhow::anyhow!("--webhook needs --webhook-secret (EDGEFARM_WEBHOOK_SECRET)")
            })?;
            let hook = crate::wire::webhooks::Webhook {
                url: url.clone(),
                secret,
            };
            target::check(&format!("--webhook {}", i + 1), &hook, &s)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            s.farm.push(hook);
        }
        Ok(s)
    }
}

/// An S3-compatible bucket for blob bytes (docs/ASSETS.md): clients upload and download by
/// presigned URLs and the bytes never pass through this server. Without `--s3-endpoint` blobs
/// are files under the data dir.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct S3Args {
    /// The bucket's S3 endpoint (`https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`).
    #[arg(long, env = "EDGEFARM_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The bucket's name.
    #[arg(long, env = "EDGEFARM_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// The bucket's region [default: us-east-1; `auto` on R2].
    #[arg(long, env = "EDGEFARM_S3_REGION")]
    pub s3_region: Option<String>,
    /// Access key id.
    #[arg(long, env = "EDGEFARM_S3_ACCESS_KEY")]
    pub s3_access_key: Option<String>,
    /// Secret access key (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "EDGEFARM_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`: MinIO, s3s-fs) [default: true]; false for
    /// virtual-host style (`bucket.endpoint/key`).
    #[arg(long, env = "EDGEFARM_S3_PATH_STYLE")]
    pub s3_path_style: Option<String>,
    /// Prefix of every blob's key in the bucket [default: blobs/].
    #[arg(long, env = "EDGEFARM_S3_PREFIX")]
    pub s3_prefix: Option<String>,
}

impl S3Args {
    /// The bucket these flags name (`None` without any), through the same rules as the
    /// `EDGEFARM_S3_*` variables of the other runtimes.
    pub fn bucket(&self) -> Result<Option<std::sync::Arc<crate::core::blobs::s3::Bucket>>, String> {
        crate::core::blobs::s3::S3Settings::from_vars(|name| {
            match name {
                "EDGEFARM_S3_ENDPOINT" => &self.s3_endpoint,
                "EDGEFARM_S3_BUCKET" => &self.s3_bucket,
                "EDGEFARM_S3_REGION" => &self.s3_region,
                "EDGEFARM_S3_ACCESS_KEY" => &self.s3_access_key,
                "EDGEFARM_S3_SECRET_KEY" => &self.s3_secret_key,
                "EDGEFARM_S3_PATH_STYLE" => &self.s3_path_style,
                "EDGEFARM_S3_PREFIX" => &self.s3_prefix,
                _ => &None,
            }
            .clone()
        })
    }
}

/// How the server faces the network: timeouts, limits, TLS, trusted proxies.
#[derive(clap::Args, Debug, Clone)]
pub struct NetArgs {
    /// Seconds a client has to send a request's headers, counted from the moment the connection
    /// opens or the previous answer was sent: it is also the keep-alive idle timeout, and it
    /// bounds a TLS handshake.
    #[arg(long, env = "EDGEFARM_HEADER_TIMEOUT_S", default_value_t = 20)]
    pub header_timeout_s: u64,
    /// Slowest accepted upload, bytes per second: a request body must arrive within the header
    /// timeout plus the body size limit at this rate.
    #[arg(long, env = "EDGEFARM_MIN_BODY_RATE", default_value_t = 64 * 1024)]
    pub min_body_rate: u64,
    /// Most connections open at once; beyond it new connections are closed at once (logged).
    #[arg(long, env = "EDGEFARM_MAX_CONNECTIONS", default_value_t = 1000)]
    pub max_connections: usize,
    /// Most long polls and event streams held at once per client (credential and address);
    /// beyond it a long poll is answered at once and an event stream refused with 429.
    #[arg(long, env = "EDGEFARM_MAX_WAITS_PER_CLIENT", default_value_t = 8)]
    pub max_waits_per_client: usize,
    /// TLS certificate chain (PEM); with --tls-key, serve https. Re-read on SIGHUP.
    #[arg(long, env = "EDGEFARM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert. Re-read on SIGHUP.
    #[arg(long, env = "EDGEFARM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A reverse proxy (IP or CIDR, repeatable) whose `X-Forwarded-For` / `X-Real-IP` is
    /// believed; from any other peer those headers are ignored and the TCP peer is the address.
    #[arg(
        long = "trusted-proxy",
        env = "EDGEFARM_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = super::peer::parse_cidr
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}
