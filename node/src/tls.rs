//! TLS on the FSPIOP surface, mutual as Mojaloop schemes require
//! (`fspiop.tls`, see [`TlsSection`]).
//!
//! - **Inbound.** With `fspiop.tls.listen`, the FSPIOP endpoints (and the
//!   switch simulator's) are served there over TLS, and only there: the
//!   plain listener keeps the channel API, the ledger, `/health` and
//!   `/metrics`. With `client_ca`, a client must present a certificate
//!   chaining to it; one that does not fails the handshake, so no request
//!   of it reaches a handler.
//! - **Outbound.** Each sender has its own HTTP client: a tenant presents its
//!   certificate from `client_certs` on what it sends, the switch simulator
//!   its `switch` one. All trust only `ca` when it is set.
//!
//! rustls on the *ring* provider, the one reqwest already uses: one crypto
//! library in the binary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use connectors::fspiop::client::FspiopClient;

use crate::config::{ConfigError, TlsSection};

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), reason: reason.into() }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(key, format!("{}: {e}", path.display())))
}

/// The certificates of a PEM file; at least one.
fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(key, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(invalid(key, format!("{}: no PEM certificate in it", path.display())));
    }
    Ok(certificates)
}

/// The TLS configuration of the FSPIOP listener, when it has one.
pub fn server_config(tls: &TlsSection) -> Result<Option<Arc<ServerConfig>>, ConfigError> {
    let Some(_) = tls.listen else {
        for (key, set) in [
            ("fspiop.tls.cert", tls.cert.is_some()),
            ("fspiop.tls.key", tls.key.is_some()),
            ("fspiop.tls.client_ca", tls.client_ca.is_some()),
        ] {
            if set {
                return Err(invalid(key, "has no effect without fspiop.tls.listen"));
            }
        }
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        return Err(invalid("fspiop.tls.cert", "fspiop.tls.listen needs a certificate and its key"));
    };
    let chain = certificates("fspiop.tls.cert", cert)?;
    let private = PrivateKeyDer::from_pem_slice(&read("fspiop.tls.key", key)?)
        .map_err(|e| invalid("fspiop.tls.key", format!("{}: {e}", key.display())))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("fspiop.tls", e.to_string()))?;
    let builder = match &tls.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates("fspiop.tls.client_ca", path)? {
                roots.add(certificate).map_err(|e| invalid("fspiop.tls.client_ca", e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| invalid("fspiop.tls.client_ca", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, private)
        .map_err(|e| invalid("fspiop.tls.key", format!("does not fit fspiop.tls.cert: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The HTTP clients FSPIOP messages leave by: one per sender with a client
/// certificate, and a default one. Clones share connection pools.
#[derive(Debug, Clone)]
pub struct Clients {
    default: reqwest::Client,
    by_sender: Arc<BTreeMap<String, reqwest::Client>>,
}

impl Clients {
    pub fn new(tls: &TlsSection) -> Result<Clients, ConfigError> {
        let ca = match &tls.ca {
            Some(path) => {
                let pem = read("fspiop.tls.ca", path)?;
                let bundle = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| invalid("fspiop.tls.ca", format!("{}: {e}", path.display())))?;
                if bundle.is_empty() {
                    return Err(invalid(
                        "fspiop.tls.ca",
                        format!("{}: no PEM certificate in it", path.display()),
                    ));
                }
                Some(bundle)
            }
            None => None,
        };
        let build = |identity: Option<reqwest::Identity>, key: &str| {
            let mut builder = reqwest::Client::builder()
                .use_rustls_tls()
                .timeout(Duration::from_millis(FspiopClient::REQUEST_TIMEOUT_MS))
                .connect_timeout(Duration::from_millis(FspiopClient::CONNECT_TIMEOUT_MS))
                .pool_max_idle_per_host(256);
            if let Some(bundle) = &ca {
                builder = builder.tls_built_in_root_certs(false);
                for certificate in bundle {
                    builder = builder.add_root_certificate(certificate.clone());
                }
            }
            if let Some(identity) = identity {
                builder = builder.identity(identity);
            }
            builder.build().map_err(|e| invalid(key, e.to_string()))
        };
        let default = build(None, "fspiop.tls")?;
        let by_sender = tls
            .client_certs
            .iter()
            .map(|(fsp, files)| {
                let key = format!("fspiop.tls.client_certs.{fsp}");
                let mut pem = read(&format!("{key}.cert"), &files.cert)?;
                pem.push(b'\n');
                pem.extend(read(&format!("{key}.key"), &files.key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| invalid(&key, e.to_string()))?;
                Ok((fsp.clone(), build(Some(identity), &key)?))
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Clients { default, by_sender: Arc::new(by_sender) })
    }

    /// The client without a certificate.
    pub fn default_client(&self) -> reqwest::Client {
        self.default.clone()
    }

    /// The client presenting `fsp`'s certificate, else the default one.
    pub fn of(&self, fsp: &str) -> reqwest::Client {
        self.by_sender.get(fsp).cloned().unwrap_or_else(|| self.default.clone())
    }

    /// The clients with a certificate, by sender.
    pub fn by_sender(&self) -> Arc<BTreeMap<String, reqwest::Client>> {
        self.by_sender.clone()
    }
}

/// Serves `app` on `listen` over TLS until `handle` shuts it down. Binds
/// before it returns, so that a taken port fails the start.
pub fn serve(
    listen: SocketAddr,
    config: Arc<ServerConfig>,
    app: Router,
    handle: axum_server::Handle<SocketAddr>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use anyhow::Context as _;
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    listener.set_nonblocking(true)?;
    let server =
        axum_server::from_tcp_rustls(listener, axum_server::tls_rustls::RustlsConfig::from_config(config))?
            .handle(handle);
    Ok(tokio::spawn(async move {
        if let Err(error) = server.serve(app.into_make_service()).await {
            tracing::error!(%listen, %error, "the FSPIOP TLS listener stopped");
        }
    }))
}
