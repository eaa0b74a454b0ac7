//! The acked protocol's frames (JSON text), as documented in the README. Pure encode/decode.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The largest sequence number either side accepts: 2^53 − 1, the largest integer every JSON
/// implementation reads exactly. A `last_seq`, `acked`, `seq` or `ack` above it is a protocol
/// violation.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// Messages lost because the server's history no longer reached back: `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeGap {
    /// The first lost sequence number.
    pub from: u64,
    /// The last lost sequence number.
    pub to: u64,
}

/// One decoded frame of the protocol. Borrowed from the frame's text where possible.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame<'a> {
    /// client → server, first on every connection. `instance` tells apart two processes
    /// (or devices) using one client id.
    Hello {
        client: Cow<'a, str>,
        last_seq: u64,
        instance: Option<u64>,
    },
    /// server → client, the answer to hello. `yours`: the highest of this instance's messages
    /// the server has taken, when it differs from `acked` (another instance wrote since).
    Welcome {
        acked: u64,
        gap: Option<ResumeGap>,
        yours: Option<u64>,
    },
    /// Either way: application data. `seq` None: not sequenced (identify messages).
    Msg { seq: Option<u64>, body: Body<'a> },
    /// Either way: everything up to `seq` arrived.
    Ack { seq: u64 },
}

/// The application payload of a `msg` frame.
#[derive(Debug, PartialEq)]
pub(crate) enum Body<'a> {
    /// Any JSON value, as its text.
    Json(&'a str),
    /// A text that is not JSON.
    Text(Cow<'a, str>),
}

impl Body<'_> {
    /// The payload as the application sent it.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Body::Json(s) => s,
            Body::Text(s) => s,
        }
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    seq: Option<u64>,
    /// Present (even as `null`) means JSON data.
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    client: Option<Cow<'a, str>>,
    last_seq: Option<u64>,
    acked: Option<u64>,
    gap: Option<ResumeGap>,
    instance: Option<u64>,
    yours: Option<u64>,
}

/// `Some` whenever the field is present, `null` included (plain `Option` would read `null` as
/// absent, and a `null` payload would be lost).
fn present<'de, D>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// Decodes a frame; None when the text is not a protocol frame.
pub(crate) fn decode(text: &str) -> Option<Frame<'_>> {
    let raw: Raw<'_> = serde_json::from_str(text).ok()?;
    match raw.kind.as_ref() {
        "hello" => Some(Frame::Hello {
            client: raw.client?,
            last_seq: raw.last_seq.unwrap_or(0),
            instance: raw.instance,
        }),
        "welcome" => Some(Frame::Welcome {
            acked: raw.acked.unwrap_or(0),
            gap: raw.gap,
            yours: raw.yours,
        }),
        "msg" => {
            let body = match (raw.data, raw.text) {
                (Some(data), _) => Body::Json(data.get()),
                (None, Some(text)) => Body::Text(text),
                (None, None) => return None,
            };
            Some(Frame::Msg { seq: raw.seq, body })
        }
        "ack" => Some(Frame::Ack { seq: raw.seq? }),
        _ => None,
    }
}

/// `{"type":"hello","client":…,"last_seq":…,"instance":…}`
pub(crate) fn hello(client: &str, last_seq: u64, instance: u64) -> String {
    let client = serde_json::to_string(client).unwrap_or_else(|_| "\"\"".into());
    format!(r#"{{"type":"hello","client":{client},"last_seq":{last_seq},"instance":{instance}}}"#)
}

/// `{"type":"welcome","acked":…,"gap":…}`, and `"yours":…` when given.
#[cfg(any(feature = "server", test))]
pub(crate) fn welcome(acked: u64, gap: Option<ResumeGap>, yours: Option<u64>) -> String {
    let gap = match gap {
        Some(ResumeGap { from, to }) => format!(r#"{{"from":{from},"to":{to}}}"#),
        None => "null".into(),
    };
    match yours {
        Some(yours) => {
            format!(r#"{{"type":"welcome","acked":{acked},"gap":{gap},"yours":{yours}}}"#)
        }
        None => format!(r#"{{"type":"welcome","acked":{acked},"gap":{gap}}}"#),
    }
}

/// `{"type":"ack","seq":…}`
pub(crate) fn ack(seq: u64) -> String {
    format!(r#"{{"type":"ack","seq":{seq}}}"#)
}

/// `{"type":"msg","seq":…,"data":…}` for JSON payloads, `"text":…` for others; no `seq` when
/// `seq` is None.
pub(crate) fn msg(seq: Option<u64>, payload: &str) -> String {
    envelope(seq, payload, is_json(payload))
}

/// Whether `payload` is one JSON value (it then travels as `data`, unescaped).
pub(crate) fn is_json(payload: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(payload).is_ok()
}

const HEAD: &str = r#"{"type":"msg""#;
const SEQ: &str = r#","seq":"#;
const DATA: &str = r#","data":"#;
const TEXT: &str = r#","text":"#;

/// [`msg`] for a payload known to be JSON (`json`) or not. One allocation, of the envelope's
/// exact size (this runs for every message sent): a full `String` becomes a frame without a
/// shared header.
fn envelope(seq: Option<u64>, payload: &str, json: bool) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(envelope_len(seq, payload, json));
    out.push_str(HEAD);
    if let Some(n) = seq {
        let _ = write!(out, "{SEQ}{n}");
    }
    if json {
        out.push_str(DATA);
        out.push_str(payload);
    } else {
        out.push_str(TEXT);
        out.push_str(&serde_json::to_string(payload).unwrap_or_else(|_| "\"\"".into()));
    }
    out.push('}');
    out
}

/// The length of [`envelope`]`(seq, payload, json)`, computed without building it.
pub(crate) fn envelope_len(seq: Option<u64>, payload: &str, json: bool) -> usize {
    let seq_len = seq.map_or(0, |n| SEQ.len() + decimal_len(n));
    let body_len = if json {
        DATA.len() + payload.len()
    } else {
        TEXT.len() + quoted_len(payload)
    };
    HEAD.len() + seq_len + body_len + 1
}

/// The length of `text` as a JSON string, quotes included, escaped as serde_json escapes it:
/// `"` and `\` and the short forms of five control characters take two bytes, the other
/// control characters six (`\u00XX`), every other byte one.
fn quoted_len(text: &str) -> usize {
    let escapes: usize = text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0a | 0x0c | 0x0d => 1,
            0x00..=0x1f => 5,
            _ => 0,
        })
        .sum();
    text.len() + escapes + 2
}

/// How many decimal digits `n` has.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_computed_length_is_the_envelopes_for_every_byte_and_form() {
        let mut texts: Vec<String> = (0u8..128).map(|b| format!("a{}z", char::from(b))).collect();
        texts.extend(
            [
                "",
                "plain",
                "é ü 日本 🎉",
                "\\\"\n\u{7f}",
                r#"{"a":[1,2.5,"x\"y"]}"#,
            ]
            .map(String::from),
        );
        for text in &texts {
            for seq in [
                None,
                Some(0),
                Some(9),
                Some(10),
                Some(99),
                Some(100),
                Some(MAX_SEQ),
                Some(u64::MAX),
            ] {
                for json in [false, true] {
                    let out = envelope(seq, text, json);
                    assert_eq!(envelope_len(seq, text, json), out.len(), "{out}");
                    assert_eq!(out.len(), out.capacity(), "{out}");
                }
                let seq_text = seq.map(|n| format!(r#","seq":{n}"#)).unwrap_or_default();
                let expected = if is_json(text) {
                    format!(r#"{{"type":"msg"{seq_text},"data":{text}}}"#)
                } else {
                    let quoted = serde_json::to_string(text).unwrap();
                    format!(r#"{{"type":"msg"{seq_text},"text":{quoted}}}"#)
                };
                assert_eq!(msg(seq, text), expected);
            }
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(
            decode(&hello("c \"1\"", 7, 99)),
            Some(Frame::Hello {
                client: "c \"1\"".into(),
                last_seq: 7,
                instance: Some(99),
            })
        );
        assert_eq!(
            decode(&welcome(3, None, None)),
            Some(Frame::Welcome {
                acked: 3,
                gap: None,
                yours: None,
            })
        );
        let gap = Some(ResumeGap { from: 2, to: 9 });
        assert_eq!(
            decode(&welcome(0, gap, Some(1))),
            Some(Frame::Welcome {
                acked: 0,
                gap,
                yours: Some(1)
            })
        );
        assert_eq!(decode(&ack(42)), Some(Frame::Ack { seq: 42 }));
        assert_eq!(
            decode(&msg(Some(5), r#"{"n": [1, 2]}"#)),
            Some(Frame::Msg {
                seq: Some(5),
                body: Body::Json(r#"{"n": [1, 2]}"#)
            })
        );
        assert_eq!(
            decode(&msg(Some(6), "null")),
            Some(Frame::Msg {
                seq: Some(6),
                body: Body::Json("null")
            })
        );
        assert_eq!(
            decode(&msg(None, "plain \"text\"\n")),
            Some(Frame::Msg {
                seq: None,
                body: Body::Text("plain \"text\"\n".into())
            })
        );
    }

    #[test]
    fn non_protocol_text_is_not_a_frame() {
        for text in [
            "hello",
            "{}",
            r#"{"type":"other"}"#,
            r#"{"type":"msg","seq":1}"#,
            r#"{"type":"ack"}"#,
        ] {
            assert_eq!(decode(text), None, "{text}");
        }
    }
}
