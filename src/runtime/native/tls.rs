//! TLS for `edgefarm serve` (`--tls-cert`, `--tls-key`): rustls, with a certificate that can be
//! replaced while serving.
//!
//! The server config asks [`Certs`] for the certificate at each handshake, and SIGHUP swaps the
//! one it holds: a renewed certificate (certbot writing new files, say) is used by every new
//! connection, while open connections keep theirs and are never dropped. A renewal that cannot
//! be read or does not match its key is logged and the previous certificate stays.
//! Only HTTP/1.1 is offered (ALPN): the header and idle timeouts of `server.rs` are HTTP/1's.

use anyhow::Context as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The certificate and key files, and the certificate currently served.
#[derive(Debug)]
#[cfg_attr(not(unix), allow(dead_code))]
pub struct Certs {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certs {
    /// Reads `cert` (PEM chain, leaf first) and `key` (PEM private key).
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = read(cert, key, &provider)?;
        Ok(Arc::new(Certs {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(current)),
        }))
    }

    /// Reads the files again; on success new handshakes use them.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = read(&self.cert, &self.key, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// The acceptor for the listener.
    pub fn acceptor(self: &Arc<Self>) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// Reloads on each SIGHUP, for ever. The handler is installed before this returns (a
    /// SIGHUP without one would end the process), the reloads happen in the future returned.
    /// Windows has no SIGHUP: there a certificate change needs a restart.
    #[cfg(not(unix))]
    pub fn reload_on_sighup(
        self: Arc<Self>,
    ) -> anyhow::Result<impl std::future::Future<Output = ()>> {
        Ok(std::future::pending())
    }

    /// Reloads on each SIGHUP, for ever. The handler is installed before this returns (a
    /// SIGHUP without one would end the process), the reloads happen in the future returned.
    #[cfg(unix)]
    pub fn reload_on_sighup(
        self: Arc<Self>,
    ) -> anyhow::Result<impl std::future::Future<Output = ()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        Ok(async move {
            while hup.recv().await.is_some() {
                match self.reload() {
                    Ok(()) => tracing::info!(
                        cert = %self.cert.display(),
                        "SIGHUP: TLS certificate reloaded"
                    ),
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "SIGHUP: keeping the previous TLS certificate"
                    ),
                }
            }
        })
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "--tls-cert {}: cannot read a PEM certificate",
                cert.display()
            )
        })?;
    anyhow::ensure!(
        !chain.is_empty(),
        "--tls-cert {}: no certificate in the file",
        cert.display()
    );
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("--tls-key {}: cannot read a PEM private key", key.display()))?;
    CertifiedKey::from_der(chain, key_der, provider).with_context(|| {
        format!(
            "--tls-key {} does not fit --tls-cert {}",
            key.display(),
            cert.display()
        )
    })
}
