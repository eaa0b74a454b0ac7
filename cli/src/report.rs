//! Writes the socket's events to stderr: readable lines, or one JSON object per line.

use std::io::Write;
use std::time::SystemTime;

use actix::prelude::*;
use resocket::{
    CloseReason, Disconnect, ErrorOccurred, InboundBinary, InboundText, SocketState, StateChanged,
};
use serde_json::json;

use crate::args::EventFormat;

/// Prints inbound text to stdout and events to stderr.
pub(crate) struct Reporter {
    pub(crate) format: EventFormat,
}

impl Actor for Reporter {
    type Context = Context<Self>;
}

impl Reporter {
    /// Writes one event.
    pub(crate) fn event(
        &self,
        event: &str,
        state: Option<&str>,
        attempt: Option<u32>,
        reason: Option<String>,
        detail: Option<String>,
    ) {
        let line = match self.format {
            EventFormat::Json => json!({
                "ts": timestamp(SystemTime::now()),
                "event": event,
                "state": state,
                "attempt": attempt,
                "reason": reason,
                "detail": detail,
            })
            .to_string(),
            EventFormat::Text => {
                let mut line = format!("[resocket] {event}");
                if let Some(state) = state {
                    line.push_str(&format!(": {state}"));
                }
                if let Some(attempt) = attempt {
                    line.push_str(&format!(" (attempt {attempt})"));
                }
                if let Some(reason) = &reason {
                    line.push_str(&format!(": {reason}"));
                }
                if let Some(detail) = &detail {
                    line.push_str(&format!(" [{detail}]"));
                }
                line
            }
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

impl Handler<StateChanged> for Reporter {
    type Result = ();

    fn handle(&mut self, change: StateChanged, _: &mut Context<Self>) {
        let (attempt, reason, detail) = match &change.state {
            SocketState::Connecting { attempt } => (Some(*attempt), None, None),
            SocketState::Identifying { .. } | SocketState::Open { .. } => (None, None, None),
            SocketState::Backoff {
                attempt,
                until,
                cause,
            } => {
                let wait = until.saturating_duration_since(std::time::Instant::now());
                (
                    Some(*attempt),
                    Some(disconnect(cause)),
                    Some(format!("retry in {wait:.1?}")),
                )
            }
            SocketState::Closed { reason } => (None, Some(close_reason(reason)), None),
        };
        self.event("state", Some(change.state.name()), attempt, reason, detail);
    }
}

impl Handler<ErrorOccurred> for Reporter {
    type Result = ();

    fn handle(&mut self, error: ErrorOccurred, _: &mut Context<Self>) {
        let event = match error.0 {
            resocket::Error::Dropped { .. } => "dropped",
            _ => "error",
        };
        self.event(event, None, None, Some(error.0.to_string()), None);
    }
}

impl Handler<InboundText> for Reporter {
    type Result = ();

    fn handle(&mut self, text: InboundText, _: &mut Context<Self>) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", text.0);
        let _ = out.flush();
    }
}

impl Handler<InboundBinary> for Reporter {
    type Result = ();

    fn handle(&mut self, data: InboundBinary, _: &mut Context<Self>) {
        self.event(
            "binary",
            None,
            None,
            None,
            Some(format!(
                "binary message of {} bytes not printed",
                data.0.len()
            )),
        );
    }
}

fn disconnect(cause: &Disconnect) -> String {
    cause.to_string()
}

fn close_reason(reason: &CloseReason) -> String {
    reason.to_string()
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-26T03:14:07.123Z`.
pub(crate) fn timestamp(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(timestamp(t), "2026-11-18T11:06:40.123Z");
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}
