//! # resocket
//!
//! WebSocket client connections for [actix] applications that must stay up for weeks: one
//! [`SocketActor`] per connection, with a heartbeat that detects dead and half-open peers,
//! reconnect with exponential backoff and jitter, identify messages on every connect, a bounded
//! outbox that keeps what is sent while disconnected, and typed subscribers.
//!
//! ```no_run
//! use std::time::Duration;
//! use actix::prelude::*;
//! use resocket::{Inbound, Send, SocketActor, SocketConfig, Subscribe};
//!
//! #[derive(serde::Deserialize, Debug)]
//! struct Tick { symbol: String, price: f64 }
//!
//! struct Printer;
//! impl Actor for Printer { type Context = Context<Self>; }
//! impl Handler<Inbound<Tick>> for Printer {
//!     type Result = ();
//!     fn handle(&mut self, Inbound(tick, _): Inbound<Tick>, _: &mut Context<Self>) {
//!         println!("{} {}", tick.symbol, tick.price);
//!     }
//! }
//!
//! #[actix::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = SocketConfig::builder("ws://127.0.0.1:9000/feed")
//!         .heartbeat(Duration::from_secs(5), Duration::from_secs(10))
//!         .identify(r#"{"op":"subscribe","channels":["ticks"]}"#)
//!         .build()?;
//!     let socket = SocketActor::start(config);
//!     socket.do_send(Subscribe::to::<Tick>(Printer.start().recipient()));
//!     socket.send(Send::text("hello")).await??;
//!     Ok(())
//! }
//! ```
//!
//! # Layout
//!
//! | file | role |
//! |---|---|
//! | `config.rs` | [`SocketConfig`] and its validating builder |
//! | `backoff.rs` | [`Backoff`]: delay for attempt n, when to give up (pure) |
//! | `heartbeat.rs` | [`Heartbeat`] settings and the dead-peer check (pure) |
//! | `outbox.rs` | [`Outbox`] limits, [`Overflow`] policy and the bounded queue (pure) |
//! | `reassembly.rs` | fragments to whole messages, size cap, UTF-8 check (pure) |
//! | `acked.rs`, `acked/wire.rs` | acked delivery: sequence numbers, window, acks, resume, dedup; the wire format (pure) |
//! | `payload.rs` | [`Outgoing`]: one outbound message |
//! | `state.rs` | [`SocketState`], [`Disconnect`], [`CloseReason`] |
//! | `messages.rs` | what an application sends a socket: [`Send`], [`Subscribe`], [`Close`], [`GetStatus`], [`TakeOutbox`] |
//! | `events.rs` | what a socket sends its subscribers: [`StateChanged`], [`Inbound`], [`InboundText`], [`InboundBinary`], [`ErrorOccurred`] |
//! | `sender.rs` | [`Sender`]: the fast path into a socket's outbox, and the outbox it shares |
//! | `subscribers.rs` | subscriber lists and routing of inbound messages |
//! | `socket.rs` | [`SocketActor`]: the state machine and its transitions |
//! | `socket/connect.rs` | one awc connect, failure classification |
//! | `socket/connection.rs` | the Open state's connection and the driver that reads and writes it |
//! | `socket/handlers.rs` | the message handlers |
//! | `restart.rs` | [`RestartPolicy`], [`RestartIntensity`] and the restart window (pure) |
//! | `supervisor.rs` | [`SupervisorActor`]: many sockets by key, restarted by policy, spread over arbiters |
//! | `supervisor/messages.rs` | what an application sends a supervisor, and its [`SupervisionEvent`]s |
//! | `server.rs` | (feature `server`) the matching server session for actix-web apps |
//! | `tls.rs` | (feature `rustls`) wss: the TLS client configuration, HTTP/1.1 forced |
//! | `error.rs` | [`Error`] |
//! | `testing.rs`, `fuzzing.rs` | (features `fault-injection`, `fuzzing`) hooks for tests and the fuzzer; not supported API |

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, unreachable_pub)]

mod acked;
mod backoff;
mod config;
mod delivery;
mod error;
mod events;
mod frame_guard;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod heartbeat;
mod messages;
mod outbox;
mod payload;
mod reassembly;
mod restart;
mod sender;
#[cfg(feature = "server")]
pub mod server;
mod socket;
mod state;
mod subscribers;
mod supervisor;
mod telemetry;
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod testing;
#[cfg(feature = "rustls")]
pub mod tls;

pub use acked::{Gap, DEFAULT_ACK_WINDOW, MAX_SEQ};
pub use backoff::{Backoff, RandomSource, SplitMix64};
pub use config::{
    Credentials, CredentialsFn, IdentifyAsyncFn, IdentifyFn, ReadyFn, SocketConfig,
    SocketConfigBuilder,
};
pub use delivery::Delivery;
pub use error::Error;
pub use events::{ErrorOccurred, Inbound, InboundBinary, InboundText, SocketId, StateChanged};
pub use heartbeat::Heartbeat;
pub use messages::{
    Close, CloseReport, Counters, GetSender, GetStatus, Request, Send, SendError, SendWhenRoom,
    Status, Subscribe, TakeOutbox,
};
pub use outbox::{Outbox, Overflow};
pub use payload::Outgoing;
pub use restart::{RestartIntensity, RestartPolicy};
pub use sender::Sender;
pub use socket::owner::SocketEnd;
pub use socket::SocketActor;
pub use state::{CloseReason, Disconnect, SocketState};
pub use subscribers::SlowSubscriber;
pub use supervisor::{
    GetSocket, GetStats, ListSockets, SendTo, Shutdown, StartSocket, StopSocket, SubscribeAll,
    SubscribeSupervision, SupervisionEvent, SupervisorActor, SupervisorConfig, SupervisorStats,
};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
