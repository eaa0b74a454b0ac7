//! wss:// support (feature `rustls`): the client TLS configuration, with HTTP/1.1 forced (a
//! WebSocket upgrade cannot run over HTTP/2), and TLS failures told apart from other connect
//! failures.

use std::cell::RefCell;
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

/// Clients kept per thread, most recently used first. Past it the least recently used is
/// dropped (connections it opened live on; only its idle pool goes), so a process that builds
/// a new TLS configuration per socket holds a bounded number of awc clients.
pub(crate) const CLIENT_CACHE: usize = 16;

thread_local! {
    // One awc client per TLS configuration per thread (building one loads a root store), keyed
    // by the configuration's address. The cached client's connector holds a clone of the
    // `Arc`, so the address cannot be reused by another configuration while it is cached.
    static CLIENTS: RefCell<Vec<((usize, bool), awc::Client)>> = const { RefCell::new(Vec::new()) };
}

/// The calling thread's client for `config`.
pub(crate) fn client(
    config: &Arc<ClientConfig>,
    tcp_timeout: std::time::Duration,
    nodelay: bool,
) -> awc::Client {
    install_provider();
    let key = (Arc::as_ptr(config) as usize, nodelay);
    CLIENTS.with(|clients| {
        let mut clients = clients.borrow_mut();
        let client = match clients.iter().position(|(k, _)| *k == key) {
            Some(i) => clients.remove(i).1,
            None => awc::Client::builder()
                .connector(
                    awc::Connector::new()
                        .connector(crate::socket::tcp::connector(nodelay))
                        .rustls_0_23(config.clone())
                        .limit(0)
                        .timeout(tcp_timeout)
                        .handshake_timeout(tcp_timeout),
                )
                .disable_timeout()
                .finish(),
        };
        clients.insert(0, (key, client.clone()));
        clients.truncate(CLIENT_CACHE);
        client
    })
}

#[cfg(test)]
fn cached_clients() -> usize {
    CLIENTS.with(|c| c.borrow().len())
}

/// A TLS failure inside a connect error, as a fatal [`Error::Tls`].
pub(crate) fn tls_error(error: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(Error::Tls(crate::Cause::from_error(tls.clone())));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return Some(Error::Tls(crate::Cause::from_error(tls.clone())));
                }
            }
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn the_client_cache_is_bounded_and_reuses_a_configuration_s_client() {
        let configs: Vec<_> = (0..100)
            .map(|_| with_roots(RootCertStore::empty()))
            .collect();
        for config in &configs {
            client(config, std::time::Duration::from_secs(1), true);
        }
        assert_eq!(cached_clients(), CLIENT_CACHE);
        let first = &configs[99];
        client(first, std::time::Duration::from_secs(1), true);
        assert_eq!(cached_clients(), CLIENT_CACHE);
        let key = (Arc::as_ptr(first) as usize, true);
        assert_eq!(CLIENTS.with(|c| c.borrow()[0].0), key, "most recent first");
    }
}
