//! `SocketConfig`: everything a socket needs to know, validated once, before anything connects.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_http::header::{HeaderName, HeaderValue};
use actix_http::Uri;

use crate::{Backoff, Error, Heartbeat, Outbox, Outgoing};

/// Produces the identify messages afresh for every connect (so that a token can be fresh).
pub type IdentifyFn = Arc<dyn Fn() -> Vec<Outgoing> + Send + Sync>;

/// Produces the identify messages asynchronously for every connect (a token fetched from an
/// auth service). Runs on the socket's thread before the attempt, within its connect timeout.
pub type IdentifyAsyncFn = Arc<
    dyn Fn() -> futures_util::future::LocalBoxFuture<'static, Result<Vec<Outgoing>, Error>>
        + Send
        + Sync,
>;

/// Called before every connect attempt for the URL and headers to use (a fresh token, a signed
/// URL, an HTTP call that returns the WebSocket URL). Runs on the socket's thread.
pub type CredentialsFn = Arc<
    dyn Fn() -> futures_util::future::LocalBoxFuture<'static, Result<Credentials, Error>>
        + Send
        + Sync,
>;

/// What a [`credentials`](SocketConfigBuilder::credentials) provider returns for one connect
/// attempt. Its values are secret: never logged, never in `Debug` output.
#[derive(Clone, Default)]
pub struct Credentials {
    pub(crate) url: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

impl Credentials {
    /// Nothing yet: the configured URL and headers.
    pub fn new() -> Self {
        Credentials::default()
    }

    /// Connect to this URL instead of the configured one.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Add this header (e.g. `Authorization: Bearer …`) to the upgrade request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("url", &self.url.as_ref().map(|_| "<secret>"))
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Decides whether an inbound text is the server's acceptance of the identify messages.
pub type ReadyFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Identify, then wait: the outbox is held until the server's reply is seen.
#[derive(Clone)]
pub(crate) struct IdentifyWait {
    pub(crate) ready: ReadyFn,
    pub(crate) timeout: Duration,
}

/// The validated configuration of one socket. Build it with [`SocketConfig::builder`].
///
/// ```
/// use std::time::Duration;
/// use resocket::{Backoff, SocketConfig};
///
/// let config = SocketConfig::builder("ws://127.0.0.1:9000/feed")
///     .heartbeat(Duration::from_secs(5), Duration::from_secs(10))
///     .keepalive(r#"{"keepalive":"live"}"#)
///     .identify(r#"{"op":"subscribe","channels":["ticks"]}"#)
///     .backoff(Backoff::exponential(Duration::from_millis(500), Duration::from_secs(30)).max_attempts(20))
///     .build()
///     .unwrap();
/// assert_eq!(config.url(), "ws://127.0.0.1:9000/feed");
///
/// let err = SocketConfig::builder("http://example.com").build().unwrap_err();
/// assert!(err.to_string().contains("`url`"));
/// ```
#[derive(Clone)]
pub struct SocketConfig {
    pub(crate) url: String,
    /// The URL as logs and Debug show it: no query string, no user info.
    pub(crate) shown_url: String,
    pub(crate) uri: Uri,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) protocols: Vec<String>,
    pub(crate) heartbeat: Heartbeat,
    pub(crate) keepalive: Option<Outgoing>,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) min_uptime: Duration,
    pub(crate) reconnect_spread: Duration,
    pub(crate) outbox: Outbox,
    pub(crate) max_message: usize,
    /// The largest message the peer takes, as it will be written (acked envelope included).
    pub(crate) peer_max_message: Option<usize>,
    /// Refusals in a row after which an acked message is given up.
    pub(crate) max_refusals: u32,
    /// Whether connections set TCP_NODELAY.
    pub(crate) tcp_nodelay: bool,
    /// The socket's name in its events (a supervisor's key takes precedence).
    pub(crate) name: Option<String>,
    pub(crate) identify: Vec<Identify>,
    pub(crate) identify_fn: Option<IdentifyFn>,
    pub(crate) identify_async: Option<IdentifyAsyncFn>,
    /// Hold the outbox after identifying until the server accepts (see `identify_until`).
    pub(crate) identify_wait: Option<IdentifyWait>,
    /// Asked before every connect attempt for the URL and headers.
    pub(crate) credentials: Option<CredentialsFn>,
    /// Where requests and their replies carry their id (a JSON pointer), if requests are used.
    pub(crate) request_id: Option<String>,
    /// Requests waiting for their reply at most.
    pub(crate) max_pending_requests: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) retry_client_errors: bool,
    pub(crate) fatal_close_codes: Vec<u16>,
    pub(crate) jitter_seed: Option<u64>,
    pub(crate) acked: Option<AckedMode>,
    pub(crate) slow_subscriber: crate::SlowSubscriber,
    /// The TLS configuration for wss:// URLs.
    #[cfg(feature = "rustls")]
    pub(crate) tls: Option<Arc<crate::tls::ClientConfig>>,
}

/// One fixed identify message; a secret one never shows in Debug output or logs.
#[derive(Clone)]
pub(crate) struct Identify {
    pub(crate) message: Outgoing,
    pub(crate) secret: bool,
}

impl fmt::Debug for Identify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.message, self.secret) {
            (_, true) => f.write_str("<redacted>"),
            (Outgoing::Text(t), false) => write!(f, "{:?}", t.as_ref() as &str),
            (Outgoing::Binary(b), false) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

/// Header names whose values are always treated as secrets.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
];

/// Acked delivery settings (see [`SocketConfigBuilder::acked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AckedMode {
    pub(crate) client_id: String,
    pub(crate) window: usize,
}

impl SocketConfig {
    /// Default connect timeout (TCP connect and handshake): 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default uptime after which the attempt counter resets: 5 s.
    pub const DEFAULT_MIN_UPTIME: Duration = Duration::from_secs(5);
    /// Default spread of the first reconnect after a good connection: 2 s.
    pub const DEFAULT_RECONNECT_SPREAD: Duration = Duration::from_secs(2);
    /// Default largest inbound message: 16 MiB.
    pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;
    /// Default wait for the peer's Close (or FIN) after ours: 2 s.
    pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default acked-mode window of messages in flight: 1,000.
    pub const DEFAULT_ACK_WINDOW: usize = crate::acked::DEFAULT_ACK_WINDOW;
    /// Default bound on requests waiting for their reply: 1,000.
    pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 1000;

    /// Starts a builder for `url` (`ws://` or `wss://`) with every other setting at its default.
    pub fn builder(url: impl Into<String>) -> SocketConfigBuilder {
        SocketConfigBuilder {
            url: url.into(),
            headers: Vec::new(),
            protocols: Vec::new(),
            heartbeat: Heartbeat::default(),
            keepalive: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            backoff: Backoff::default(),
            min_uptime: Self::DEFAULT_MIN_UPTIME,
            reconnect_spread: Self::DEFAULT_RECONNECT_SPREAD,
            outbox: Outbox::default(),
            max_message: Self::DEFAULT_MAX_MESSAGE,
            peer_max_message: None,
            max_refusals: 3,
            tcp_nodelay: true,
            name: None,
            identify: Vec::new(),
            identify_fn: None,
            identify_async: None,
            identify_wait: None,
            credentials: None,
            request_id: None,
            max_pending_requests: Self::DEFAULT_MAX_PENDING_REQUESTS,
            close_timeout: Self::DEFAULT_CLOSE_TIMEOUT,
            retry_client_errors: false,
            fatal_close_codes: Vec::new(),
            jitter_seed: None,
            acked: None,
            ack_window: Self::DEFAULT_ACK_WINDOW,
            slow_subscriber: crate::SlowSubscriber::default(),
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }

    /// The URL the socket connects to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL as logs show it: without its query string or user info, which may hold tokens.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// The heartbeat settings.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat
    }

    /// The reconnect policy.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The outbox limits.
    pub fn outbox(&self) -> Outbox {
        self.outbox
    }

    /// The identify messages for one connect: the fixed ones, then the generated ones.
    pub(crate) fn identify_messages(&self) -> Vec<Outgoing> {
        let mut messages: Vec<Outgoing> = self.identify.iter().map(|i| i.message.clone()).collect();
        if let Some(f) = &self.identify_fn {
            messages.extend(f());
        }
        messages
    }
}

impl fmt::Debug for SocketConfig {
    // Secret header values show as `Sensitive`, secret identify payloads as `<redacted>`, and
    // the URL without its query string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketConfig")
            .field("url", &self.shown_url)
            .field("headers", &self.headers)
            .field("protocols", &self.protocols)
            .field("heartbeat", &self.heartbeat)
            .field("keepalive", &self.keepalive.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &self.backoff)
            .field("min_uptime", &self.min_uptime)
            .field("reconnect_spread", &self.reconnect_spread)
            .field("outbox", &self.outbox)
            .field("max_message", &self.max_message)
            .field("peer_max_message", &self.peer_max_message)
            .field("max_refusals", &self.max_refusals)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .field("name", &self.name)
            .field("identify", &self.identify)
            .field("identify_with", &self.identify_fn.is_some())
            .field("identify_with_async", &self.identify_async.is_some())
            .field(
                "identify_until",
                &self.identify_wait.as_ref().map(|w| w.timeout),
            )
            .field("credentials", &self.credentials.is_some())
            .field("request_id", &self.request_id)
            .field("max_pending_requests", &self.max_pending_requests)
            .field("close_timeout", &self.close_timeout)
            .field("retry_client_errors", &self.retry_client_errors)
            .field("fatal_close_codes", &self.fatal_close_codes)
            .field("acked", &self.acked)
            .field("slow_subscriber", &self.slow_subscriber)
            .finish()
    }
}

/// Builds a [`SocketConfig`]; [`build`](Self::build) validates every value.
#[must_use]
pub struct SocketConfigBuilder {
    url: String,
    headers: Vec<(String, String, bool)>,
    protocols: Vec<String>,
    heartbeat: Heartbeat,
    keepalive: Option<Outgoing>,
    connect_timeout: Duration,
    backoff: Backoff,
    min_uptime: Duration,
    reconnect_spread: Duration,
    outbox: Outbox,
    max_message: usize,
    peer_max_message: Option<usize>,
    max_refusals: u32,
    tcp_nodelay: bool,
    name: Option<String>,
    identify: Vec<Identify>,
    identify_fn: Option<IdentifyFn>,
    identify_async: Option<IdentifyAsyncFn>,
    identify_wait: Option<IdentifyWait>,
    credentials: Option<CredentialsFn>,
    request_id: Option<String>,
    max_pending_requests: usize,
    close_timeout: Duration,
    retry_client_errors: bool,
    fatal_close_codes: Vec<u16>,
    jitter_seed: Option<u64>,
    acked: Option<String>,
    ack_window: usize,
    slow_subscriber: crate::SlowSubscriber,
    #[cfg(feature = "rustls")]
    tls: Option<Arc<crate::tls::ClientConfig>>,
}

impl fmt::Debug for SocketConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketConfigBuilder")
            .field("url", &shown_url(&self.url))
            .finish_non_exhaustive()
    }
}

impl SocketConfigBuilder {
    /// Adds a header to the upgrade request (repeatable). The values of `Authorization`,
    /// `Proxy-Authorization`, `Cookie`, `X-Api-Key` and `X-Auth-Token` are treated as secrets.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into(), false));
        self
    }

    /// Adds a header whose value is a secret: it never shows in Debug output or logs.
    pub fn secret_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into(), true));
        self
    }

    /// Offers a subprotocol (repeatable). If the server chooses one that was not offered, the
    /// connect fails with [`Error::Subprotocol`].
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Ping every `interval`; presume the peer dead after `timeout` without any frame.
    /// Defaults to 5 s and 10 s.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.heartbeat = Heartbeat { interval, timeout };
        self
    }

    /// An application-level message sent with every heartbeat ping, such as
    /// `{"keepalive":"live"}`, for servers that ignore WebSocket pings. Defaults to none.
    pub fn keepalive(mut self, message: impl Into<Outgoing>) -> Self {
        self.keepalive = Some(message.into());
        self
    }

    /// Limit on TCP connect plus handshake. Defaults to 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The reconnect policy. Defaults to 500 ms doubling to 30 s with full jitter, forever.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// A connection must stay open this long before the attempt counter resets, so that a
    /// server that accepts and drops at once still backs off. Defaults to 5 s.
    pub fn min_uptime(mut self, uptime: Duration) -> Self {
        self.min_uptime = uptime;
        self
    }

    /// After a connection that was up for the minimum uptime drops, the first reconnect waits the
    /// minimum backoff plus a random delay in `[0, spread]`, so that the sockets a server
    /// restart drops all at once come back spread out instead of in one burst. Defaults to 2 s.
    pub fn reconnect_spread(mut self, spread: Duration) -> Self {
        self.reconnect_spread = spread;
        self
    }

    /// The outbox limits and overflow policy. Defaults to 10,000 messages / 16 MiB, Reject.
    pub fn outbox(mut self, outbox: Outbox) -> Self {
        self.outbox = outbox;
        self
    }

    /// The largest inbound message (a single frame or a reassembled fragmented message).
    /// Larger ones are discarded with an [`Error::MessageTooLarge`] event. Defaults to 16 MiB.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// The largest message the peer accepts (its own `max_message`). A message that would be
    /// written larger (in acked mode: with its envelope and JSON escaping) is refused when it
    /// is sent, with [`Error::MessageTooLargeForPeer`] and the message handed back, instead
    /// of being written and refused by the peer. Defaults to no check.
    pub fn peer_max_message(mut self, bytes: usize) -> Self {
        self.peer_max_message = Some(bytes);
        self
    }

    /// Enables [`Request`](crate::Request)s: a request and its reply carry the same id at
    /// `id_pointer`, a JSON pointer such as `"/id"` (JSON-RPC) or `"/meta/correlation"`. An
    /// inbound message whose id matches a pending request answers it (and is not delivered
    /// to subscribers); any other message, a reply to an unknown or late id included, is an
    /// ordinary inbound message. Defaults to off.
    pub fn requests(mut self, id_pointer: impl Into<String>) -> Self {
        self.request_id = Some(id_pointer.into());
        self
    }

    /// Requests waiting for their reply at most; past it a request is refused
    /// ([`Error::TooManyRequests`]). Defaults to
    /// [`DEFAULT_MAX_PENDING_REQUESTS`](SocketConfig::DEFAULT_MAX_PENDING_REQUESTS).
    pub fn max_pending_requests(mut self, max: usize) -> Self {
        self.max_pending_requests = max;
        self
    }

    /// In acked mode, how many times in a row the peer may end the connection over the same
    /// message (closing with 1003, 1007 or 1009, the codes a server refuses a message with)
    /// before it is given up: it leaves the link as an [`Error::MessageRefused`] event that
    /// carries it, and the messages behind it flow. Defaults to 3.
    pub fn max_refusals(mut self, times: u32) -> Self {
        self.max_refusals = times;
        self
    }

    /// The name every event of this socket carries ([`SocketId`](crate::SocketId)), so that
    /// one subscriber can serve many sockets. Defaults to `socket-N`; a supervised socket is
    /// named by its key.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether connections set TCP_NODELAY, so that small messages leave at once instead of
    /// waiting (Nagle's algorithm) for the peer to acknowledge earlier ones: without it a
    /// message written right after another can wait ~40 ms for a delayed ACK. Defaults to
    /// true; false trades latency for fewer, fuller packets.
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.tcp_nodelay = nodelay;
        self
    }

    /// A message sent first on every connect, before the outbox (repeatable; sent in order).
    pub fn identify(mut self, message: impl Into<Outgoing>) -> Self {
        self.identify.push(Identify {
            message: message.into(),
            secret: false,
        });
        self
    }

    /// An identify message that holds a secret (a token): sent like
    /// [`identify`](Self::identify), but never shown in Debug output or logs.
    pub fn identify_secret(mut self, message: impl Into<Outgoing>) -> Self {
        self.identify.push(Identify {
            message: message.into(),
            secret: true,
        });
        self
    }

    /// Messages produced afresh on every connect (after any fixed [`identify`](Self::identify)
    /// messages), e.g. an auth message with a fresh token, then re-subscribe commands.
    pub fn identify_with<F>(mut self, f: F) -> Self
    where
        F: Fn() -> Vec<Outgoing> + Send + Sync + 'static,
    {
        self.identify_fn = Some(Arc::new(f));
        self
    }

    /// Identify messages produced by an async function before every connect attempt (after
    /// the fixed and [`identify_with`](Self::identify_with) ones): a token fetched from an
    /// auth service, a nonce signed by a remote key. It runs within the attempt's connect
    /// timeout; an error it returns fails the attempt (retried with backoff when
    /// [`Error::is_retryable`], such as [`Error::Credentials`] with `retryable`, else
    /// Closed(Fatal)). The messages are treated as secrets: never logged.
    ///
    /// ```
    /// # use resocket::{Outgoing, SocketConfig};
    /// let config = SocketConfig::builder("ws://127.0.0.1:9000/feed")
    ///     .identify_with_async(|| Box::pin(async {
    ///         let token = "fetched-from-your-auth-service"; // e.g. an HTTP call
    ///         Ok(vec![Outgoing::json(&serde_json::json!({"op": "auth", "token": token}))?])
    ///     }))
    ///     .build()?;
    /// # Ok::<(), resocket::Error>(())
    /// ```
    pub fn identify_with_async<F>(mut self, f: F) -> Self
    where
        F: Fn() -> futures_util::future::LocalBoxFuture<'static, Result<Vec<Outgoing>, Error>>
            + Send
            + Sync
            + 'static,
    {
        self.identify_async = Some(Arc::new(f));
        self
    }

    /// Identify, then wait: after the identify messages of each connection, hold everything
    /// else (the outbox, in acked mode the messages in flight) until an inbound text message
    /// for which `ready` returns true (e.g. the server's `{"type":"ready"}`), so that nothing
    /// reaches a server that has not accepted the identity. Meanwhile the state is
    /// [`SocketState::Identifying`](crate::SocketState::Identifying); the reply is delivered
    /// to subscribers like any message. No such reply within `timeout`: the connection is
    /// treated as failed (`Error::Handshake`) and retried with backoff. Defaults to off.
    pub fn identify_until<F>(mut self, ready: F, timeout: Duration) -> Self
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        self.identify_wait = Some(IdentifyWait {
            ready: Arc::new(ready),
            timeout,
        });
        self
    }

    /// Fresh credentials on every connect: `provider` is called before each attempt and its
    /// [`Credentials`] (a URL, headers such as a refreshed token) are used for that attempt,
    /// on top of the configured ones. Its values are never logged nor shown in `Debug`. An
    /// error it returns fails the attempt: [`Error::Credentials`] with `retryable` deciding
    /// between backoff and Closed(Fatal).
    ///
    /// ```
    /// # use resocket::{Credentials, SocketConfig};
    /// let config = SocketConfig::builder("ws://127.0.0.1:9000/feed")
    ///     .credentials(|| Box::pin(async {
    ///         let token = "fetched-from-your-auth-service"; // e.g. an HTTP call
    ///         Ok(Credentials::new().header("authorization", format!("Bearer {token}")))
    ///     }))
    ///     .build()?;
    /// # Ok::<(), resocket::Error>(())
    /// ```
    pub fn credentials<F>(mut self, provider: F) -> Self
    where
        F: Fn() -> futures_util::future::LocalBoxFuture<'static, Result<Credentials, Error>>
            + Send
            + Sync
            + 'static,
    {
        self.credentials = Some(Arc::new(provider));
        self
    }

    /// How long `close` waits for the peer's Close (or FIN) after sending its own.
    /// Defaults to 2 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Retry handshakes refused with a 4xx status (401, 403, 404, …) instead of closing with a
    /// fatal error. Defaults to false: such a refusal usually needs a person.
    pub fn retry_client_errors(mut self, retry: bool) -> Self {
        self.retry_client_errors = retry;
        self
    }

    /// Close codes from the server after which the socket closes for good (Closed{PeerClosed})
    /// instead of reconnecting (repeatable). Defaults to none: every server close reconnects.
    pub fn fatal_close_code(mut self, code: u16) -> Self {
        self.fatal_close_codes.push(code);
        self
    }

    /// Seed the jitter generator, making reconnect delays reproducible. Defaults to a seed
    /// from the clock.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Acked delivery with this client id (stable across reconnects and restarts): every
    /// message carries a sequence number and stays in flight until the server acknowledges it;
    /// after a reconnect, what is unacknowledged is written again, in order; inbound duplicates
    /// are dropped. The server must speak the README's acked protocol (the `server` feature's
    /// [`Hub`](crate::server::Hub) does). Defaults to off.
    pub fn acked(mut self, client_id: impl Into<String>) -> Self {
        self.acked = Some(client_id.into());
        self
    }

    /// In acked mode, how many messages may be in flight (written, not yet acknowledged);
    /// past it, messages wait in the outbox. Defaults to 1,000.
    pub fn ack_window(mut self, messages: usize) -> Self {
        self.ack_window = messages;
        self
    }

    /// What to do when a subscriber's mailbox is full. Defaults to
    /// [`SlowSubscriber::Wait`](crate::SlowSubscriber::Wait): pause reading, lose nothing.
    pub fn slow_subscriber(mut self, policy: crate::SlowSubscriber) -> Self {
        self.slow_subscriber = policy;
        self
    }

    /// For wss://: trust exactly these roots (e.g. a private CA) instead of the webpki roots.
    /// Certificate verification stays on. (Feature `rustls`.)
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_roots(mut self, roots: crate::tls::RootCertStore) -> Self {
        self.tls = Some(crate::tls::with_roots(roots));
        self
    }

    /// For wss://: a complete rustls client configuration (its ALPN is replaced by HTTP/1.1,
    /// which a WebSocket upgrade needs). (Feature `rustls`.)
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_config(mut self, config: crate::tls::ClientConfig) -> Self {
        self.tls = Some(crate::tls::http11(config));
        self
    }

    /// Validates every value; an error names the field at fault.
    pub fn build(self) -> Result<SocketConfig, Error> {
        let uri = parse_url(&self.url)?;
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value, secret) in &self.headers {
            let n = HeaderName::try_from(name.as_str())
                .map_err(|_| Error::config("header", format!("invalid header name {name:?}")))?;
            let mut v = HeaderValue::try_from(value.as_str()).map_err(|_| {
                Error::config("header", format!("invalid value for header {name:?}"))
            })?;
            // A sensitive value prints as `Sensitive` in every Debug output, awc's included.
            v.set_sensitive(*secret || SENSITIVE_HEADERS.contains(&n.as_str()));
            headers.push((n, v));
        }
        for p in &self.protocols {
            let token = !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            if !token {
                return Err(Error::config(
                    "protocol",
                    format!("{p:?} is not a valid token"),
                ));
            }
        }
        self.heartbeat.validate()?;
        if self.connect_timeout.is_zero() {
            return Err(Error::config(
                "connect_timeout",
                "must be greater than zero",
            ));
        }
        if self.close_timeout.is_zero() {
            return Err(Error::config("close_timeout", "must be greater than zero"));
        }
        self.backoff.validate()?;
        self.outbox.validate()?;
        if self.max_message == 0 {
            return Err(Error::config("max_message", "must be greater than zero"));
        }
        if self.peer_max_message == Some(0) {
            return Err(Error::config(
                "peer_max_message",
                "must be greater than zero",
            ));
        }
        if self
            .identify_wait
            .as_ref()
            .is_some_and(|w| w.timeout.is_zero())
        {
            return Err(Error::config(
                "identify_until",
                "timeout must be greater than zero",
            ));
        }
        if self.max_refusals == 0 {
            return Err(Error::config("max_refusals", "must be at least 1"));
        }
        if let Some(pointer) = &self.request_id {
            if !pointer.starts_with('/') {
                return Err(Error::config(
                    "requests",
                    format!("{pointer:?} is not a JSON pointer to a field (such as \"/id\")"),
                ));
            }
        }
        if self.max_pending_requests == 0 {
            return Err(Error::config(
                "max_pending_requests",
                "must be greater than zero",
            ));
        }
        if self.acked.as_deref().is_some_and(str::is_empty) {
            return Err(Error::config("acked", "the client id must not be empty"));
        }
        if self.ack_window == 0 {
            return Err(Error::config("ack_window", "must be greater than zero"));
        }
        let acked = self.acked.map(|client_id| AckedMode {
            client_id,
            window: self.ack_window,
        });
        Ok(SocketConfig {
            shown_url: shown_url(&self.url),
            url: self.url,
            uri,
            headers,
            protocols: self.protocols,
            heartbeat: self.heartbeat,
            keepalive: self.keepalive,
            connect_timeout: self.connect_timeout,
            backoff: self.backoff,
            min_uptime: self.min_uptime,
            reconnect_spread: self.reconnect_spread,
            outbox: self.outbox,
            max_message: self.max_message,
            peer_max_message: self.peer_max_message,
            max_refusals: self.max_refusals,
            tcp_nodelay: self.tcp_nodelay,
            name: self.name,
            identify: self.identify,
            identify_fn: self.identify_fn,
            identify_async: self.identify_async,
            identify_wait: self.identify_wait,
            credentials: self.credentials,
            request_id: self.request_id,
            max_pending_requests: self.max_pending_requests,
            close_timeout: self.close_timeout,
            retry_client_errors: self.retry_client_errors,
            fatal_close_codes: self.fatal_close_codes,
            jitter_seed: self.jitter_seed,
            acked,
            slow_subscriber: self.slow_subscriber,
            #[cfg(feature = "rustls")]
            tls: self.tls,
        })
    }
}

/// `url` without its query string and user info (which may hold tokens).
fn shown_url(url: &str) -> String {
    let mut shown = match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    };
    if let Some((scheme, rest)) = shown.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if !userinfo.contains('/') {
                shown = format!("{scheme}://…@{host}");
            }
        }
    }
    shown
}

pub(crate) fn parse_url(url: &str) -> Result<Uri, Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::config("url", format!("{url:?} is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") if cfg!(feature = "rustls") => {}
        Some("wss") => {
            return Err(Error::config(
                "url",
                format!(
                    "{url:?}: wss:// needs the `rustls` feature, which this build does not have"
                ),
            ))
        }
        Some(other) => {
            return Err(Error::config(
                "url",
                format!("{url:?}: scheme {other:?} is not ws or wss"),
            ))
        }
        None => {
            return Err(Error::config(
                "url",
                format!("{url:?} has no scheme (ws://)"),
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(Error::config("url", format!("{url:?} has no host")));
    }
    // (`Uri::port` is None for a port that does not fit a u16: read the authority itself.)
    let host_port = uri
        .authority()
        .map_or("", |a| a.as_str().rsplit('@').next().unwrap_or(""));
    if let Some((_, port)) = host_port.rsplit_once(':').filter(|(_, p)| !p.contains(']')) {
        if !matches!(port.parse::<u32>(), Ok(1..=65535)) {
            return Err(Error::config(
                "url",
                format!("{url:?}: port {port:?} is not in 1..=65535"),
            ));
        }
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<SocketConfig, Error>) -> &'static str {
        match result {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = SocketConfig::builder("ws://127.0.0.1:1/x").build().unwrap();
        assert_eq!(c.heartbeat.interval, Duration::from_secs(5));
        assert_eq!(c.heartbeat.timeout, Duration::from_secs(10));
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.backoff.min(), Duration::from_millis(500));
        assert_eq!(c.backoff.max(), Duration::from_secs(30));
        assert_eq!(c.backoff.attempt_limit(), None);
        assert_eq!(c.min_uptime, Duration::from_secs(5));
        assert_eq!(c.outbox.message_limit(), 10_000);
        assert_eq!(c.outbox.byte_limit(), 16 * 1024 * 1024);
        assert_eq!(c.outbox.overflow(), crate::Overflow::Reject);
        assert_eq!(c.max_message, 16 * 1024 * 1024);
    }

    #[test]
    fn bad_values_name_their_field() {
        let b = || SocketConfig::builder("ws://127.0.0.1:1/");
        assert_eq!(field_of(SocketConfig::builder("not a url").build()), "url");
        assert_eq!(field_of(SocketConfig::builder("http://h/").build()), "url");
        assert_eq!(field_of(SocketConfig::builder("/path/only").build()), "url");
        for bad in [
            "ws://127.0.0.1:99999/",
            "ws://127.0.0.1:0/",
            "ws://:80/",
            "ws:///x",
        ] {
            assert_eq!(field_of(SocketConfig::builder(bad).build()), "url", "{bad}");
        }
        assert_eq!(
            field_of(b().header("x-ok", "a\r\nInjected: 1").build()),
            "header"
        );
        if !cfg!(feature = "rustls") {
            assert_eq!(field_of(SocketConfig::builder("wss://h/").build()), "url");
        }
        let ms = Duration::from_millis;
        assert_eq!(field_of(b().heartbeat(ms(0), ms(10)).build()), "heartbeat");
        assert_eq!(
            field_of(b().heartbeat(ms(100), ms(10)).build()),
            "heartbeat"
        );
        assert_eq!(
            field_of(b().connect_timeout(ms(0)).build()),
            "connect_timeout"
        );
        assert_eq!(field_of(b().close_timeout(ms(0)).build()), "close_timeout");
        assert_eq!(
            field_of(b().backoff(Backoff::exponential(ms(10), ms(1))).build()),
            "backoff"
        );
        assert_eq!(field_of(b().outbox(Outbox::bounded(0)).build()), "outbox");
        assert_eq!(field_of(b().max_message(0).build()), "max_message");
        assert_eq!(field_of(b().header("bad name", "v").build()), "header");
        assert_eq!(field_of(b().header("x-ok", "bad\nvalue").build()), "header");
        assert_eq!(field_of(b().protocol("a b").build()), "protocol");
        assert_eq!(field_of(b().acked("").build()), "acked");
        assert_eq!(field_of(b().acked("c").ack_window(0).build()), "ack_window");
    }

    #[test]
    fn debug_hides_secrets() {
        let c = SocketConfig::builder("ws://user:pw-secret@127.0.0.1:1/feed?token=q-secret")
            .header("Authorization", "Bearer a-secret")
            .secret_header("X-Custom", "c-secret")
            .header("X-Trace", "visible")
            .identify_secret(r#"{"token":"i-secret"}"#)
            .identify(r#"{"op":"subscribe"}"#)
            .build()
            .unwrap();
        let shown = format!("{c:?}");
        for secret in ["a-secret", "c-secret", "i-secret", "q-secret", "pw-secret"] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(
            shown.contains("visible") && shown.contains("subscribe"),
            "{shown}"
        );
        assert_eq!(c.shown_url(), "ws://…@127.0.0.1:1/feed?…");
        let b = SocketConfig::builder("ws://h/?token=q-secret");
        assert!(!format!("{b:?}").contains("q-secret"));
    }

    #[test]
    fn identify_messages_fixed_then_generated() {
        let c = SocketConfig::builder("ws://127.0.0.1:1/")
            .identify("auth")
            .identify_with(|| vec![Outgoing::from("sub")])
            .build()
            .unwrap();
        assert_eq!(
            c.identify_messages(),
            vec![Outgoing::from("auth"), Outgoing::from("sub")]
        );
    }
}
