//! `resocket`: a resilient websocat for people and scripts. See `resocket --help`.

mod args;
mod report;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use actix::prelude::*;
use clap::Parser;
use resocket::{
    Backoff, Close, CloseReason, Error, GetStatus, SendError, SendMessage, SocketActor,
    SocketConfig, SocketState, Subscribe,
};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::args::Args;
use crate::report::Reporter;

/// Exit codes, as documented in `--help` and the README.
mod exit {
    pub(crate) const SENT: u8 = 0;
    pub(crate) const GAVE_UP: u8 = 1;
    pub(crate) const USAGE: u8 = 2;
    pub(crate) const FATAL: u8 = 3;
    pub(crate) const UNSENT: u8 = 4;
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One clear line, not clap's usage block.
            let text = e.to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines.next().unwrap_or("invalid arguments").to_string();
            if first.ends_with(':') {
                // "the following required arguments were not provided:" + the names.
                first = format!("{first} {}", lines.next().unwrap_or_default());
            }
            let first = first.strip_prefix("error: ").unwrap_or(&first);
            eprintln!("resocket: {first} (see resocket --help)");
            return ExitCode::from(exit::USAGE);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off")).init();
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("resocket: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let code = actix::System::new().block_on(run(args, config));
    ExitCode::from(code)
}

fn build_config(args: &Args) -> Result<SocketConfig, Error> {
    let mut backoff = Backoff::exponential(args.backoff_min, args.backoff_max);
    if let Some(n) = args.max_attempts {
        backoff = backoff.max_attempts(n);
    }
    let mut builder = SocketConfig::builder(args.url.as_str())
        .heartbeat(args.heartbeat, args.heartbeat_timeout)
        .backoff(backoff)
        .connect_timeout(args.connect_timeout)
        .max_message(args.max_message);
    for (name, value) in &args.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    for p in &args.protocols {
        builder = builder.protocol(p.as_str());
    }
    if let Some(k) = &args.keepalive {
        builder = builder.keepalive(k.as_str());
    }
    for i in &args.identify {
        builder = builder.identify(i.as_str());
    }
    if let Some(client) = &args.acked {
        builder = builder.acked(client.as_str());
    }
    builder.build()
}

/// The exit code for a socket that closed on its own.
fn closed_code(reason: &CloseReason) -> u8 {
    match reason {
        CloseReason::GaveUp { .. } => exit::GAVE_UP,
        CloseReason::Fatal(_) | CloseReason::PeerClosed { .. } => exit::FATAL,
        CloseReason::ByUser => exit::SENT,
    }
}

async fn run(args: Args, config: SocketConfig) -> u8 {
    let reporter = Reporter {
        format: args.events,
    }
    .start();
    let socket = SocketActor::new(config).start();
    socket.do_send(Subscribe::states(reporter.clone().recipient()));
    socket.do_send(Subscribe::errors(reporter.clone().recipient()));
    socket.do_send(Subscribe::text(reporter.clone().recipient()));
    socket.do_send(Subscribe::binary(reporter.clone().recipient()));

    if let Some(code) = pump_stdin(&socket, &reporter).await {
        let _ = reporter.send(Flush).await;
        return code;
    }
    drain_and_close(&socket, &reporter, args.drain_timeout).await
}

/// Sends stdin line by line until EOF. Some(code) when the socket closed on its own first.
async fn pump_stdin(socket: &Addr<SocketActor>, reporter: &Addr<Reporter>) -> Option<u8> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return None,
            Err(e) => {
                eprintln!("resocket: reading stdin: {e}");
                return None;
            }
        };
        let mut message = SendMessage::text(line);
        loop {
            match socket.send(message).await {
                Ok(Ok(())) => break,
                Ok(Err(SendError {
                    error: Error::OutboxFull { .. },
                    message: back,
                })) => {
                    // Backpressure: wait for the outbox to drain, keep the line.
                    message = SendMessage::new(back);
                    actix_rt::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(Err(SendError {
                    error: Error::Closed,
                    ..
                })) => return Some(final_code(socket).await),
                Ok(Err(e)) => {
                    reporter.do_send(resocket::ErrorOccurred(
                        e.error,
                        resocket::SocketId::new("cli"),
                    ));
                    break;
                }
                Err(_) => return Some(exit::FATAL),
            }
        }
    }
}

/// The socket's own end, once it is Closed.
async fn final_code(socket: &Addr<SocketActor>) -> u8 {
    match socket.send(GetStatus).await {
        Ok(status) => match status.state {
            SocketState::Closed { reason } => closed_code(&reason),
            _ => exit::SENT,
        },
        Err(_) => exit::FATAL,
    }
}

/// At EOF: keep trying to deliver the outbox until the deadline, then close cleanly.
async fn drain_and_close(
    socket: &Addr<SocketActor>,
    reporter: &Addr<Reporter>,
    timeout: Duration,
) -> u8 {
    let deadline = Instant::now() + timeout;
    // Wait (bounded) until the socket is Open with an empty outbox, or has closed by itself.
    loop {
        let Ok(status) = socket.send(GetStatus).await else {
            return exit::FATAL;
        };
        match &status.state {
            SocketState::Closed { reason } => {
                let code = closed_code(reason);
                let _ = reporter.send(Flush).await;
                if status.outbox_len > 0 {
                    eprintln!("resocket: {} message(s) unsent", status.outbox_len);
                }
                return code;
            }
            // In acked mode, also until every line is acknowledged.
            SocketState::Open { .. } if status.outbox_len == 0 && status.unacked == 0 => break,
            _ => {}
        }
        if Instant::now() >= deadline {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    let report = match socket
        .send(Close::graceful(remaining.max(Duration::from_millis(100))))
        .await
    {
        Ok(report) => report,
        Err(_) => return exit::FATAL,
    };
    // Let the reporter print the last events.
    let _ = reporter.send(Flush).await;
    if report.unsent > 0 {
        eprintln!(
            "resocket: drain timed out after {timeout:?}: {} message(s) unsent",
            report.unsent
        );
        return exit::UNSENT;
    }
    exit::SENT
}

/// A no-op message: when it is answered, everything sent to the reporter before it is printed.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for Reporter {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {}
}
