//! A raw WebSocket client for hostile-peer tests: it sends exactly the frames the test gives,
//! protocol or not, and shows exactly what came back (awc's framing, none of resocket's).

use std::time::Duration;

use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};

use super::DEADLINE;

/// What a raw client saw next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Text(String),
    /// A Close frame: its code and description, if any.
    Close(Option<u16>, Option<String>),
    /// The connection ended without a Close frame.
    Ended,
}

pub struct RawClient {
    framed: Framed<BoxedSocket, Codec>,
}

impl RawClient {
    pub async fn connect(url: &str) -> Self {
        let (_response, framed) = awc::Client::new()
            .ws(url)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("raw client could not connect to {url}: {e}"));
        RawClient { framed }
    }

    pub async fn send(&mut self, text: &str) {
        self.framed
            .send(Message::Text(text.to_string().into()))
            .await
            .unwrap_or_else(|e| panic!("raw client could not send {text:?}: {e}"));
    }

    /// The next text or close (pings and pongs are skipped), within the deadline.
    pub async fn next(&mut self) -> Seen {
        let start = std::time::Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "raw client: nothing arrived within {DEADLINE:?}"
            );
            match actix_rt::time::timeout(left, self.framed.next()).await {
                Err(_) => panic!("raw client: nothing arrived within {DEADLINE:?}"),
                Ok(None) | Ok(Some(Err(_))) => return Seen::Ended,
                Ok(Some(Ok(Frame::Text(t)))) => {
                    return Seen::Text(String::from_utf8_lossy(&t).into_owned())
                }
                Ok(Some(Ok(Frame::Close(reason)))) => {
                    return Seen::Close(
                        reason.as_ref().map(|r| u16::from(r.code)),
                        reason.and_then(|r| r.description),
                    )
                }
                Ok(Some(Ok(Frame::Ping(p)))) => {
                    let _ = self.framed.send(Message::Pong(p)).await;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next text, which must be one.
    pub async fn text(&mut self) -> String {
        match self.next().await {
            Seen::Text(t) => t,
            other => panic!("raw client expected a text, saw {other:?}"),
        }
    }

    /// Reads until a Close frame (skipping texts), and returns its code and description.
    pub async fn closed(&mut self) -> (Option<u16>, Option<String>) {
        for _ in 0..100_000 {
            match self.next().await {
                Seen::Text(_) => continue,
                Seen::Close(code, reason) => return (code, reason),
                Seen::Ended => panic!("raw client: the connection ended without a Close frame"),
            }
        }
        panic!("raw client: no Close frame in 100,000 messages")
    }

    /// Says hello as `client`, and returns the welcome.
    pub async fn hello(&mut self, client: &str, last_seq: u64) -> String {
        self.send(&format!(
            r#"{{"type":"hello","client":"{client}","last_seq":{last_seq}}}"#
        ))
        .await;
        let welcome = self.text().await;
        assert!(welcome.contains(r#""type":"welcome""#), "{welcome}");
        welcome
    }
}

/// A short pause for tests that must let time pass (a TTL); never to wait for an event.
pub async fn let_pass(d: Duration) {
    actix_rt::time::sleep(d).await;
}
