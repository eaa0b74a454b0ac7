//! wss:// support (feature `rustls`): the client TLS configuration, with HTTP/1.1 forced (a
//! WebSocket upgrade cannot run over HTTP/2), and TLS failures told apart from other connect
//! failures.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub use rustls::{ClientConfig, RootCertStore};

use crate::Error;

/// Installs ring as rustls' process-wide crypto provider, once, unless the application has
/// installed one already (awc's `Connector::new()` panics without one).
pub(crate) fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The default configuration: the webpki (Mozilla) roots, HTTP/1.1.
pub(crate) fn default_config() -> Arc<ClientConfig> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            with_roots(roots)
        })
        .clone()
}

/// A configuration that trusts exactly `roots`, HTTP/1.1.
pub(crate) fn with_roots(roots: RootCertStore) -> Arc<ClientConfig> {
    install_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(config) => http11(config),
        // ring supports the default versions; this cannot fail, but never panic on it.
        Err(_) => http11(
            ClientConfig::builder()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
        ),
    }
}

/// `config` with ALPN limited to HTTP/1.1.
pub(crate) fn http11(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

thread_local! {
    // One awc client per TLS configuration per thread (building one loads a root store).
    static CLIENTS: std::cell::RefCell<HashMap<usize, awc::Client>> =
        std::cell::RefCell::new(HashMap::new());
}

/// The calling thread's client for `config`.
pub(crate) fn client(config: &Arc<ClientConfig>, tcp_timeout: std::time::Duration) -> awc::Client {
    install_provider();
    let key = Arc::as_ptr(config) as usize;
    CLIENTS.with(|clients| {
        clients
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| {
                awc::Client::builder()
                    .connector(
                        awc::Connector::new()
                            .rustls_0_23(config.clone())
                            .limit(0)
                            .timeout(tcp_timeout)
                            .handshake_timeout(tcp_timeout),
                    )
                    .disable_timeout()
                    .finish()
            })
            .clone()
    })
}

/// A TLS failure inside a connect error, as a fatal [`Error::Tls`].
pub(crate) fn tls_error(error: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(Error::Tls(tls.to_string()));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return Some(Error::Tls(tls.to_string()));
                }
            }
        }
        current = e.source();
    }
    None
}
