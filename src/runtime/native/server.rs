//! The accept loop: connections, their limits and timeouts, optional TLS, graceful shutdown.
//!
//! `axum::serve` offers none of the limits a server on an open network needs, so this loop
//! serves each connection with hyper's HTTP/1 server directly:
//! - hyper's header read timeout: a client must send a request's headers within
//!   `--header-timeout-s` of connecting or of its previous answer, so it is also the keep-alive
//!   idle timeout (hyper starts the timer as soon as the connection waits for a request);
//! - a TLS handshake gets the same time;
//! - at most `--max-connections` are open; a connection beyond that is closed at once, with a
//!   warning at most every few seconds, so file descriptors never run out and nodes that
//!   retry get in as soon as slow clients are timed out.
//!
//! Bodies are timed where they are read (`mod.rs`), long polls are capped per client there too.

use super::args::NetArgs;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Answers one request from a peer.
pub trait Handler: Clone + Send + Sync + 'static {
    /// The answer to `req` from `peer`.
    fn call(
        self,
        peer: SocketAddr,
        req: axum::extract::Request,
    ) -> impl Future<Output = axum::response::Response> + Send + 'static;
}

/// Seconds between two "connection limit reached" warnings.
const CAP_LOG_EVERY_S: u64 = 10;

/// Serves `listener` until `shutdown` completes, then lets open requests finish.
pub async fn run<H: Handler>(
    listener: TcpListener,
    handler: H,
    net: &NetArgs,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(Semaphore::new(net.max_connections.max(1)));
    let header_timeout = Duration::from_secs(net.header_timeout_s.max(1));
    let graceful = GracefulShutdown::new();
    let last_warning = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, mostly: wait for some to close rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(stream);
            let refused = refused.fetch_add(1, Ordering::Relaxed) + 1;
            let now = super::now_ms() / 1000;
            if now >= last_warning.load(Ordering::Relaxed) + CAP_LOG_EVERY_S {
                last_warning.store(now, Ordering::Relaxed);
                tracing::warn!(
                    max_connections = net.max_connections,
                    refused,
                    "connection limit reached: refusing new connections until open ones close (--max-connections, EDGEFARM_MAX_CONNECTIONS)"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve(TokioIo::new(stream), peer, handler, header_timeout, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve(TokioIo::new(stream), peer, handler, header_timeout, watcher)
                                .await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    // Open requests finish (a long poll within its wait); an event stream would never end.
    let grace = Duration::from_secs(super::MAX_WAIT_S + 5);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still open after {} s; stopping anyway",
            grace.as_secs()
        );
    }
}

async fn serve<I, H>(
    io: TokioIo<I>,
    peer: SocketAddr,
    handler: H,
    header_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let answer = handler.clone().call(peer, req.map(axum::body::Body::new));
        async move { Ok::<_, std::convert::Infallible>(answer.await) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = watcher.watch(http.serve_connection(io, service));
    if let Err(e) = conn.await {
        // Timeouts, resets and malformed requests: the client's business, not an error here.
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
