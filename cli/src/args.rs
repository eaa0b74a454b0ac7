//! Command-line arguments, and the parsers for durations, sizes and headers.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// A resilient WebSocket client for people and scripts.
///
/// Reads lines from stdin and sends each as a text message; prints each inbound text message to
/// stdout, one per line. Keeps the connection alive with a heartbeat, reconnects with backoff,
/// and keeps the lines read while disconnected to send them after reconnecting. Events (state
/// changes, errors) go to stderr.
///
/// Exit codes: 0 all sent; 1 gave up reconnecting; 2 usage error; 3 fatal handshake error
/// (e.g. 401/403/404, not a WebSocket endpoint); 4 drain timed out with messages unsent.
#[derive(Debug, Parser)]
#[command(name = "resocket", version, about, long_about)]
pub(crate) struct Args {
    /// The server, e.g. ws://127.0.0.1:9000/ws
    pub(crate) url: String,

    /// A header for the upgrade request, as `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "K:V", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,

    /// A subprotocol to offer (repeatable).
    #[arg(long = "protocol", value_name = "NAME")]
    pub(crate) protocols: Vec<String>,

    /// Time between pings.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub(crate) heartbeat: Duration,

    /// Silence after which the server is presumed dead and the connection dropped.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) heartbeat_timeout: Duration,

    /// An application-level JSON message sent with every ping, e.g. '{"keepalive":"live"}'.
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub(crate) keepalive: Option<String>,

    /// A JSON message sent first on every connect (repeatable; sent in order).
    #[arg(long = "identify", value_name = "JSON", value_parser = parse_json)]
    pub(crate) identify: Vec<String>,

    /// The smallest reconnect delay.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration)]
    pub(crate) backoff_min: Duration,

    /// The largest reconnect delay.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub(crate) backoff_max: Duration,

    /// Give up after this many consecutive failed attempts (exit code 1). Default: never.
    #[arg(long, value_name = "N")]
    pub(crate) max_attempts: Option<u32>,

    /// Limit on TCP connect plus handshake.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) connect_timeout: Duration,

    /// The largest inbound message, in bytes (suffixes K, M: KiB, MiB).
    #[arg(long, value_name = "BYTES", default_value = "16M", value_parser = parse_size)]
    pub(crate) max_message: usize,

    /// Acked delivery (the README's acked protocol) with this client id: lines are numbered and
    /// kept until the server acknowledges them, resent after a reconnect, never duplicated.
    #[arg(long, value_name = "CLIENT_ID")]
    pub(crate) acked: Option<String>,

    /// At end of input, how long to keep trying to send what is left before closing.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) drain_timeout: Duration,

    /// How events are written to stderr.
    #[arg(long, value_enum, default_value_t = EventFormat::Text)]
    pub(crate) events: EventFormat,
}

/// The stderr event format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum EventFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line: ts, event, state, attempt, reason, detail.
    Json,
}

/// `500ms`, `5s`, `1.5s`, `2m`, `1h`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} has no unit (write 500ms, 5s, 2m or 1h)"))?;
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (write 500ms, 5s, 2m or 1h)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{s:?} is out of range"))
}

/// `1048576`, `64K`, `16M` (K = KiB, M = MiB).
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (number, factor) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1024),
        Some((i, 'M' | 'm')) => (&s[..i], 1024 * 1024),
        _ => (s, 1),
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("{s:?} is not a size (write 1048576, 64K or 16M)"))
}

/// `Name: value`.
pub(crate) fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not a header (write Name: value)"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("{s:?} has an empty header name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Any valid JSON text, kept as written.
pub(crate) fn parse_json(s: &str) -> Result<String, String> {
    serde_json::from_str::<serde_json::Value>(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("not valid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn sizes_headers_json() {
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("lots").is_err());
        assert_eq!(
            parse_header("Authorization: Bearer x:y"),
            Ok(("Authorization".into(), "Bearer x:y".into()))
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_json("{\"a\":1}").is_ok());
        assert!(parse_json("{a").is_err());
    }
}
