//! A socket's metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`); without the feature every call here compiles to nothing.
//!
//! The series and their meaning are listed in the README's Metrics section.
//!
//! Counters and gauges are published on every state change and every heartbeat interval
//! (in every state, outages included), so they lag by at most one interval and cost nothing
//! per message. Install the recorder (an
//! exporter) before starting sockets: handles taken before it exists record nothing.

use std::time::Duration;

use crate::Status;

/// The states a socket reports, in the order of [`SocketState`](crate::SocketState).
#[cfg(feature = "metrics")]
const STATES: [&str; 5] = ["connecting", "identifying", "open", "backoff", "closed"];

/// Counters published.
#[cfg(feature = "metrics")]
const COUNTERS: usize = 14;

/// One socket's metric handles, registered once.
#[cfg(feature = "metrics")]
pub(crate) struct Telemetry {
    counters: [metrics::Counter; COUNTERS],
    /// What `counters` were last given: each publish adds the difference, so a restarted
    /// socket (new counters from 0, same labels) or two sockets of one name add up.
    published: [u64; COUNTERS],
    states: [metrics::Gauge; 5],
    gauges: [metrics::Gauge; 4],
    rtt: metrics::Histogram,
}

#[cfg(feature = "metrics")]
impl Telemetry {
    pub(crate) fn new(socket: &str) -> Self {
        static DESCRIBED: std::sync::Once = std::sync::Once::new();
        DESCRIBED.call_once(describe);
        let label = || [("socket", socket.to_string())];
        let counter = |name: &'static str| metrics::counter!(name, &label());
        let gauge = |name: &'static str| metrics::gauge!(name, &label());
        Telemetry {
            counters: [
                counter("resocket_connects_total"),
                counter("resocket_reconnects_total"),
                counter("resocket_connect_failures_total"),
                counter("resocket_messages_in_total"),
                counter("resocket_messages_out_total"),
                counter("resocket_dropped_total"),
                counter("resocket_refused_total"),
                counter("resocket_discarded_total"),
                counter("resocket_expired_total"),
                counter("resocket_duplicates_total"),
                counter("resocket_collapsed_total"),
                counter("resocket_lagged_total"),
                counter("resocket_waited_total"),
                counter("resocket_errors_lost_total"),
            ],
            published: [0; COUNTERS],
            states: STATES.map(|state| {
                metrics::gauge!(
                    "resocket_state",
                    &[("socket", socket.to_string()), ("state", state.to_string())]
                )
            }),
            gauges: [
                gauge("resocket_outbox_messages"),
                gauge("resocket_outbox_bytes"),
                gauge("resocket_in_flight"),
                gauge("resocket_pending_requests"),
            ],
            rtt: metrics::histogram!("resocket_ping_rtt_seconds", &label()),
        }
    }

    /// Publishes `status`: its counters, gauges and state (none current once `stopped`).
    pub(crate) fn publish(&mut self, status: &Status, stopped: bool) {
        let counters = &status.counters;
        let values = [
            counters.connects,
            counters.reconnects,
            counters.connect_failures,
            counters.messages_in,
            counters.messages_out,
            counters.dropped,
            counters.refused,
            counters.discarded,
            counters.expired,
            counters.duplicates,
            counters.collapsed,
            counters.lagged,
            counters.waited,
            counters.errors_lost,
        ];
        for ((counter, last), value) in self.counters.iter().zip(&mut self.published).zip(values) {
            counter.increment(value.saturating_sub(*last));
            *last = value;
        }
        let state = (!stopped).then(|| status.state.name());
        for (gauge, name) in self.states.iter().zip(STATES) {
            gauge.set(if Some(name) == state { 1.0 } else { 0.0 });
        }
        let values = [
            status.outbox_len,
            status.outbox_bytes,
            status.unacked,
            status.pending_requests,
        ];
        for (gauge, value) in self.gauges.iter().zip(values) {
            gauge.set(value as f64);
        }
    }

    /// One Ping round trip.
    pub(crate) fn ping_rtt(&self, rtt: Duration) {
        self.rtt.record(rtt.as_secs_f64());
    }
}

/// The HELP text of every series, given to the recorder once.
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("resocket_connects_total", "Connections opened");
    describe_counter!(
        "resocket_reconnects_total",
        "Connections opened after the first one"
    );
    describe_counter!(
        "resocket_connect_failures_total",
        "Connect attempts that failed"
    );
    describe_counter!("resocket_messages_in_total", "Data messages read");
    describe_counter!("resocket_messages_out_total", "Data messages written");
    describe_counter!(
        "resocket_dropped_total",
        "Messages dropped by the outbox overflow policy"
    );
    describe_counter!("resocket_refused_total", "Sends refused");
    describe_counter!(
        "resocket_discarded_total",
        "Inbound messages discarded (too large, invalid, undecodable)"
    );
    describe_counter!(
        "resocket_expired_total",
        "Messages whose time to live passed before they were written"
    );
    describe_counter!(
        "resocket_duplicates_total",
        "Acked mode: inbound duplicates dropped"
    );
    describe_counter!(
        "resocket_collapsed_total",
        "Queued messages replaced by a newer one with the same collapse key"
    );
    describe_counter!(
        "resocket_lagged_total",
        "Deliveries dropped for a full subscriber mailbox (policy Drop)"
    );
    describe_counter!(
        "resocket_waited_total",
        "Times reading paused for a full subscriber mailbox (policy Wait)"
    );
    describe_counter!(
        "resocket_errors_lost_total",
        "Error events a subscriber missed because its mailbox was full"
    );
    describe_gauge!(
        "resocket_state",
        "1 for the socket's current state (label state), else 0"
    );
    describe_gauge!("resocket_outbox_messages", "Messages waiting in the outbox");
    describe_gauge!(
        "resocket_outbox_bytes",
        Unit::Bytes,
        "Payload bytes waiting in the outbox"
    );
    describe_gauge!(
        "resocket_in_flight",
        "Acked mode: messages written and not yet acknowledged"
    );
    describe_gauge!(
        "resocket_pending_requests",
        "Requests waiting for their reply"
    );
    describe_histogram!(
        "resocket_ping_rtt_seconds",
        Unit::Seconds,
        "Heartbeat Ping to Pong round trip"
    );
}

/// Without the `metrics` feature: nothing.
#[cfg(not(feature = "metrics"))]
pub(crate) struct Telemetry;

#[cfg(not(feature = "metrics"))]
impl Telemetry {
    pub(crate) fn new(_socket: &str) -> Self {
        Telemetry
    }

    pub(crate) fn publish(&mut self, _status: &Status, _stopped: bool) {}

    pub(crate) fn ping_rtt(&self, _rtt: Duration) {}
}
