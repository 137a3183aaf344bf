//! The native server (`edgefarm serve`): hyper in front, the core on one thread behind it.
//!
//! The core's store futures are not `Send`, and SQLite wants one writer anyway, so every request
//! is sent over a channel to a single core thread (`batch.rs`). That thread takes every request
//! waiting, runs them one after another inside one SQLite transaction, commits (one fsync for
//! the batch: group commit), and only then answers them — no client hears "accepted" before its
//! write is durable. Long polls and job event streams are loops in this shell around ordinary
//! core requests (`requests.rs`), woken by what the core says happened (`wakes.rs`).
//!
//! Files: `args.rs` (flags), `server.rs` (accept loop, timeouts, connection cap), `tls.rs`
//! (rustls, reloaded on SIGHUP), `peer.rs` (the client address, trusted proxies), `batch.rs`,
//! `block.rs` (runs the core's future on the core thread), `requests.rs`, `wakes.rs`.

mod args;
mod batch;
mod blobs;
mod block;
mod peer;
mod requests;
mod server;
mod tls;
mod wakes;
pub mod webhooks;

pub use args::{NetArgs, S3Args, ServeArgs, WebhookArgs};

use crate::core::{Config, Ids};
use crate::store::{Memory, Sqlite};
use anyhow::Context as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Longest long poll (`?wait=`), seconds: the core's bound, which it applies to the `wait_ms`
/// of its `LongPoll` signal.
pub const MAX_WAIT_S: u64 = crate::core::api::queue::MAX_WAIT_S;

struct OsIds;

impl Ids for OsIds {
    fn random(&self) -> u128 {
        let mut b = [0u8; 16];
        // getrandom only fails when the OS has no entropy source at all; fall back to the clock
        // mixed with a counter rather than panicking in a request.
        if getrandom::fill(&mut b).is_err() {
            return now_ms() as u128 ^ (std::process::id() as u128) << 64;
        }
        u128::from_le_bytes(b)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn load_or_make_secret(args: &ServeArgs) -> anyhow::Result<(String, bool)> {
    if let Some(s) = &args.secret {
        anyhow::ensure!(
            s.len() >= 8,
            "the farm secret must be at least 8 characters"
        );
        return Ok((s.clone(), false));
    }
    let path = args.data.join("secret");
    if !args.memory {
        if let Ok(s) = std::fs::read_to_string(&path) {
            return Ok((s.trim().to_string(), false));
        }
    }
    let secret = format!("efs_{:032x}", OsIds.random());
    if !args.memory {
        write_private(&path, &secret)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok((secret, true))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f =
        crate::node::platform::private(std::fs::OpenOptions::new().write(true).create_new(true))
            .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Runs the server until SIGINT/SIGTERM.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if !args.memory {
        std::fs::create_dir_all(&args.data)
            .with_context(|| format!("cannot create data dir {}", args.data.display()))?;
    }
    let (secret, generated) = load_or_make_secret(&args)?;
    let mut config = Config::new(secret.clone());
    config.lease_ms = args.lease_ms.max(100);
    config.heartbeat_ms = args.heartbeat_ms.max(50);
    config.poll_ms = args.poll_ms.max(50);
    // Leases from before this start get a grace (core::scheduler::expiry).
    config.started_ms = now_ms();
    config.nexrender = crate::core::nexrender::Settings {
        ordering: args.nexrender_ordering,
        timeout_ms: args.nexrender_timeout_ms.max(100),
        max_attempts: args.nexrender_max_attempts.max(1),
        body_bytes: args.nexrender_body_bytes,
    };
    config.auth_limit = crate::core::auth_limit::AuthLimit {
        failures: args.auth_failures_per_minute,
        window_ms: 60_000,
    };
    config.bucket = args
        .s3
        .bucket()
        .map_err(|e| anyhow::anyhow!("{e} (the --s3-* flags / EDGEFARM_S3_* variables)"))?;
    config.webhooks = args.webhooks.settings()?;
    let certs = match (&args.net.tls_cert, &args.net.tls_key) {
        (Some(cert), Some(key)) => Some(tls::Certs::load(cert, key)?),
        _ => None,
    };
    raise_open_files_limit(args.net.max_connections);
    let blob_dir = if args.memory {
        // Nothing survives a restart: a fresh folder of its own, removed at exit.
        std::env::temp_dir().join(format!(
            "edgefarm-blobs-{}-{:x}",
            std::process::id(),
            OsIds.random() as u64
        ))
    } else {
        args.data.join("blobs")
    };
    let blobs = Arc::new(
        crate::blob::fs::FsBlobs::at(&blob_dir)
            .with_context(|| format!("cannot open the blob folder {}", blob_dir.display()))?,
    );
    let net = &args.net;
    let shell_config = Arc::new(config.clone());
    let shell_bucket = config.bucket.clone();
    let retry_after_s = config.poll_ms.div_ceil(1000).max(1);
    let (tx, rx) = mpsc::channel(4096);
    let wakes = Arc::new(wakes::Wakes::default());
    let store_desc;
    let core = {
        let wakes = wakes.clone();
        let thread = std::thread::Builder::new().name("edgefarm-core".into());
        if args.memory {
            store_desc = "memory (nothing survives a restart)".to_string();
            thread.spawn(move || batch::core_loop(Memory::new(), config, rx, wakes))?
        } else {
            let path = args.data.join("edgefarm.db");
            store_desc = format!("sqlite at {}", path.display());
            let store =
                Sqlite::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            thread.spawn(move || batch::core_loop(store, config, rx, wakes))?
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let acceptor = match &certs {
            Some(certs) => {
                tokio::spawn(certs.clone().reload_on_sighup()?);
                Some(certs.acceptor()?)
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        tokio::spawn(wakes.clone().expiry_timer());
        let shell = requests::Shell {
            tx,
            wakes,
            holds: wakes::Holds::new(net.max_waits_per_client),
            proxies: Arc::new(peer::Proxies::new(net.trusted_proxies.clone())),
            config: shell_config,
            header_timeout: Duration::from_secs(net.header_timeout_s.max(1)),
            min_body_rate: net.min_body_rate,
            retry_after_s,
            latency: Default::default(),
            blobs,
        };
        tokio::spawn(webhooks::run(shell.clone(), shell.wakes.clone()));
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        tracing::info!(%addr, store = %store_desc, "edgefarm serving");
        println!("edgefarm listening on {scheme}://{addr} (store: {store_desc})");
        if let Some(bucket) = &shell_bucket {
            println!("blobs: S3 bucket {bucket:?} (presigned URLs)");
        }
        if generated {
            println!("farm secret (new): {secret}\n  export EDGEFARM_SECRET={secret} EDGEFARM_URL={scheme}://{addr}");
        }
        server::run(listener, shell, net, acceptor, shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    drop(rt);
    let _ = core.join();
    if args.memory {
        let _ = std::fs::remove_dir_all(&blob_dir);
    }
    Ok(())
}

/// Raises the soft limit of open files towards what `max_connections` needs (the common
/// default of 1,024 would otherwise run out before the cap is reached). Windows has no such
/// limit on sockets.
#[cfg(not(unix))]
fn raise_open_files_limit(_max_connections: usize) {}

/// Raises the soft limit of open files towards what `max_connections` needs (the common
/// default of 1,024 would otherwise run out before the cap is reached).
#[cfg(unix)]
fn raise_open_files_limit(max_connections: usize) {
    let want = max_connections as u64 + 128;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur >= want {
        return;
    }
    let raised = want.min(lim.rlim_max);
    let old = lim.rlim_cur;
    lim.rlim_cur = raised;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 || raised < want {
        tracing::warn!(
            open_files = raised.max(old),
            max_connections,
            "the open-files limit is below --max-connections; connections beyond it fail to open"
        );
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
