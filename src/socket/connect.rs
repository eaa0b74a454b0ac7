//! Opening one connection with awc, and sorting its failures into retryable and fatal.

use std::time::Duration;

use actix_codec::Framed;
use awc::error::WsClientError;
use awc::BoxedSocket;

use awc::http::header::{HeaderName, HeaderValue};

use crate::frame_guard::FrameGuard;
use crate::{Error, SocketConfig};

/// An open WebSocket connection: awc's, with its codec guarded (see [`FrameGuard`]).
pub(crate) type WsFramed = Framed<BoxedSocket, FrameGuard>;

/// awc's own TCP connect limit; our `connect_timeout` (usually shorter) governs.
const TCP_CONNECT_LIMIT: Duration = Duration::from_secs(60);

thread_local! {
    // One client per thread (awc's advice; nothing in it is Send), with and without
    // TCP_NODELAY. `limit(0)`: a client otherwise holds at most 100 WebSockets, and the 101st
    // connect times out.
    static CLIENT: awc::Client = plain_client(true);
    static CLIENT_NAGLE: awc::Client = plain_client(false);
}

fn plain_client(nodelay: bool) -> awc::Client {
    awc::Client::builder()
        .connector(
            awc::Connector::new()
                .connector(super::tcp::connector(nodelay))
                .limit(0)
                .timeout(TCP_CONNECT_LIMIT),
        )
        .disable_timeout()
        .finish()
}

/// A connection, with the identify messages produced for it by
/// [`identify_with_async`](crate::SocketConfigBuilder::identify_with_async).
pub(crate) struct Connected {
    pub(crate) framed: WsFramed,
    pub(crate) identify: Vec<crate::Outgoing>,
}

/// Connects (on the current thread's client) within the configured timeout, which covers the
/// whole attempt: the credentials provider, the async identify function and the handshake.
pub(crate) async fn connect(config: &SocketConfig) -> Result<Connected, Error> {
    let limit = config.connect_timeout;
    let deadline = std::time::Instant::now() + limit;
    let unanswered = |what: &str| Error::Credentials {
        message: format!("{what} did not answer within the connect timeout of {limit:?}"),
        retryable: true,
    };
    let (uri, extra) = match &config.credentials {
        None => (None, Vec::new()),
        Some(provider) => {
            let credentials = actix_rt::time::timeout(left(deadline), provider())
                .await
                .map_err(|_| unanswered("the credentials provider"))??;
            fresh_credentials(credentials)?
        }
    };
    let identify = match &config.identify_async {
        None => Vec::new(),
        Some(f) => actix_rt::time::timeout(left(deadline), f())
            .await
            .map_err(|_| unanswered("the identify_with_async function"))??,
    };
    let uri = uri.unwrap_or_else(|| config.uri.clone());
    let mut request = client(config, &uri).ws(uri);
    for (name, value) in config.headers.iter().chain(&extra) {
        request = request.header(name.clone(), value.clone());
    }
    if !config.protocols.is_empty() {
        request = request.protocols(&config.protocols);
    }
    request = request.max_frame_size(config.max_message);
    let (response, framed) = actix_rt::time::timeout(left(deadline), request.connect())
        .await
        .map_err(|_| Error::ConnectTimeout(config.connect_timeout))?
        .map_err(classify)?;
    if let Some(chosen) = response.headers().get("sec-websocket-protocol") {
        let chosen = String::from_utf8_lossy(chosen.as_bytes()).into_owned();
        if !config.protocols.contains(&chosen) {
            return Err(Error::Subprotocol {
                offered: config.protocols.clone(),
                chosen,
            });
        }
    }
    let max = config.max_message;
    Ok(Connected {
        framed: framed.into_map_codec(|codec| FrameGuard::new(codec, max)),
        identify,
    })
}

/// What is left of the attempt's time.
fn left(deadline: std::time::Instant) -> Duration {
    deadline.saturating_duration_since(std::time::Instant::now())
}

/// Headers for one upgrade request.
type Headers = Vec<(HeaderName, HeaderValue)>;

/// The URL and headers a credentials provider gave for one attempt, validated; every value
/// is marked sensitive, and no error repeats it.
fn fresh_credentials(
    credentials: crate::Credentials,
) -> Result<(Option<awc::http::Uri>, Headers), Error> {
    let invalid = |what: &str| Error::Credentials {
        message: format!("the provider returned {what}"),
        retryable: false,
    };
    let uri = match &credentials.url {
        None => None,
        Some(url) => Some(
            crate::config::parse_url(url).map_err(|_| invalid("an invalid ws:// or wss:// URL"))?,
        ),
    };
    let mut headers = Vec::with_capacity(credentials.headers.len());
    for (name, value) in &credentials.headers {
        let name =
            HeaderName::try_from(name.as_str()).map_err(|_| invalid("an invalid header name"))?;
        let mut value = HeaderValue::try_from(value.as_str())
            .map_err(|_| invalid(&format!("an invalid value for header {name}")))?;
        value.set_sensitive(true);
        headers.push((name, value));
    }
    Ok((uri, headers))
}

/// The calling thread's awc client for this socket's scheme.
fn client(config: &SocketConfig, uri: &awc::http::Uri) -> awc::Client {
    #[cfg(feature = "rustls")]
    if uri.scheme_str() == Some("wss") {
        let tls = config
            .tls
            .clone()
            .unwrap_or_else(crate::tls::default_config);
        return crate::tls::client(&tls, TCP_CONNECT_LIMIT, config.tcp_nodelay);
    }
    #[cfg(feature = "rustls")]
    crate::tls::install_provider();
    let _ = uri; // (only the rustls build has a second scheme)
    if config.tcp_nodelay {
        CLIENT.with(awc::Client::clone)
    } else {
        CLIENT_NAGLE.with(awc::Client::clone)
    }
}

/// Whether a connect failure is worth another attempt under this configuration.
pub(crate) fn is_retryable(error: &Error, config: &SocketConfig) -> bool {
    match error {
        Error::HandshakeStatus(status) if config.retry_client_errors => *status >= 400,
        other => other.is_retryable(),
    }
}

fn classify(error: WsClientError) -> Error {
    match error {
        WsClientError::InvalidResponseStatus(status) => Error::HandshakeStatus(status.as_u16()),
        WsClientError::InvalidUpgradeHeader
        | WsClientError::InvalidConnectionHeader(_)
        | WsClientError::MissingConnectionHeader
        | WsClientError::MissingWebSocketAcceptHeader
        | WsClientError::InvalidChallengeResponse(..) => Error::Handshake(format!(
            "{error}: the server did not accept a WebSocket upgrade"
        )),
        WsClientError::Protocol(e) => Error::Connection(crate::Cause::from_error(e)),
        WsClientError::SendRequest(e) => {
            #[cfg(feature = "rustls")]
            if let awc::error::SendRequestError::Connect(awc::error::ConnectError::Io(io)) = &e {
                if let Some(tls) = crate::tls::tls_error(io) {
                    return tls;
                }
            }
            let text = e.to_string();
            match e {
                // The I/O error's kind (refused, unreachable, too many open files) for
                // `source()`; awc's other errors are not `Send`, so only their text is kept.
                awc::error::SendRequestError::Connect(awc::error::ConnectError::Io(io)) => {
                    let io = std::io::Error::new(io.kind(), io.to_string());
                    Error::Connect(crate::Cause::with_source(text, io))
                }
                _ => Error::Connect(text.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classification() {
        let config = SocketConfig::builder("ws://127.0.0.1:1/").build().unwrap();
        for (status, retry) in [
            (500, true),
            (503, true),
            (429, true),
            (408, true),
            (401, false),
            (403, false),
            (404, false),
        ] {
            assert_eq!(
                is_retryable(&Error::HandshakeStatus(status), &config),
                retry,
                "{status}"
            );
        }
        let lenient = SocketConfig::builder("ws://127.0.0.1:1/")
            .retry_client_errors(true)
            .build()
            .unwrap();
        assert!(is_retryable(&Error::HandshakeStatus(401), &lenient));
        assert!(is_retryable(&Error::Connect("refused".into()), &config));
        assert!(!is_retryable(
            &Error::Handshake("no upgrade".into()),
            &config
        ));
    }
}
