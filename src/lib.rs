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
//! use resocket::{Inbound, SendMessage, SocketActor, SocketConfig, Subscribe};
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
//!     let socket = SocketActor::connect(config);
//!     socket.do_send(Subscribe::to::<Tick>(Printer.start().recipient()));
//!     socket.send(SendMessage::text("hello")).await??;
//!     Ok(())
//! }
//! ```
//!
//! # Concepts
//!
//! - **A socket** is a [`SocketActor`] with one [`SocketConfig`]; its [`SocketState`] is
//!   Connecting, Identifying, Open, Backoff or Closed, and every change reaches the
//!   [`StateChanged`] subscribers. [`Backoff`] and [`Heartbeat`] set how it reconnects and how
//!   it finds a dead peer.
//! - **Sending**: [`SendMessage`] (or a [`Sender`], the thread-safe fast path) queues an
//!   [`Outgoing`] message in the bounded [`Outbox`]; [`Delivery`] options give it a time to live
//!   or a collapse key; [`Request`] waits for the reply with the same id. Acked mode
//!   (`SocketConfigBuilder::acked`) makes delivery exactly once with the server's `Hub`.
//! - **Receiving**: [`Subscribe`] an actor to typed payloads ([`Inbound`]), raw text or binary,
//!   states and errors ([`ErrorOccurred`] carrying an [`Error`]).
//! - **Many sockets**: a [`SupervisorActor`] owns sockets by key and restarts them by
//!   [`RestartPolicy`] within a [`RestartIntensity`]; a restarted socket keeps its outbox, its
//!   pending requests and its subscribers.
//! - **The server side** (feature `server`): `server::accept` for actix-web apps, and the
//!   acked `server::Hub`.
//!
//! The source layout, file by file, is in `ARCHITECTURE.md`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod acked;
mod backoff;
mod config;
mod delivery;
mod error;
mod events;
#[cfg(feature = "fleet")]
#[cfg_attr(docsrs, doc(cfg(feature = "fleet")))]
pub mod fleet;
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
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
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
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;

pub use acked::{ResumeGap, MAX_SEQ};
pub use backoff::{Backoff, RandomSource, SplitMix64};
pub use config::{
    Credentials, CredentialsFn, IdentifyAsyncFn, IdentifyFn, ReadyFn, SocketConfig,
    SocketConfigBuilder,
};
pub use delivery::Delivery;
pub use error::{Cause, Error};
pub use events::{ErrorOccurred, Inbound, InboundBinary, InboundText, SocketId, StateChanged};
#[cfg(feature = "fleet")]
pub use fleet::{Fleet, FleetConfig, FleetConfigBuilder, FleetSender, FleetStats, Lease};
pub use heartbeat::Heartbeat;
pub use messages::{
    BatchError, Close, CloseReport, Counters, GetSender, GetStatus, Request, SendBatch, SendError,
    SendMessage, SendWhenRoom, Status, Subscribe, TakeOutbox,
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
    GetSocket, GetSupervisorStats, ListSockets, SendTo, Shutdown, StartSocket, StopSocket,
    SubscribeAll, SubscribeSupervision, SupervisionEvent, SupervisorActor, SupervisorConfig,
    SupervisorStats,
};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
