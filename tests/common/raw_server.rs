//! A raw WebSocket server on 127.0.0.1: it does the opening handshake by hand and then writes
//! exactly the bytes the test gives (frames actix-web would never send: a header announcing
//! 1 GiB, oversized fragments, one message trickled over seconds).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// An unmasked server frame: `first` is FIN | opcode.
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    header_len(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// Just the header of a frame announcing `len` payload bytes.
pub fn header(first: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first];
    header_len(&mut out, len);
    out
}

fn header_len(out: &mut Vec<u8>, len: u64) {
    match len {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

pub const FIN: u8 = 0x80;
pub const TEXT: u8 = 0x1;
pub const CONTINUATION: u8 = 0x0;

/// Serves each connection on its own thread with `script`, after the handshake.
pub struct RawServer {
    pub addr: SocketAddr,
    pub connections: Arc<Mutex<usize>>,
}

impl RawServer {
    pub fn start(script: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(0));
        let counter = connections.clone();
        let script = Arc::new(script);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                *counter.lock().unwrap() += 1;
                let script = script.clone();
                std::thread::spawn(move || {
                    if handshake(&mut stream).is_ok() {
                        script(&mut stream);
                    }
                });
            }
        });
        RawServer { addr, connections }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

fn handshake(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 || request.len() > 16 * 1024 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        request.push(byte[0]);
    }
    let request = String::from_utf8_lossy(&request);
    let key = request
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    let accept = actix_http::ws::hash_key(key.as_bytes());
    let accept = String::from_utf8_lossy(&accept);
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )?;
    stream.flush()
}

/// A raw TCP WebSocket client: the upgrade by hand, then whatever bytes the test writes (a
/// header announcing 1 GiB, say). Returns the stream after the 101 answer.
pub fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(super::DEADLINE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        assert!(stream.read(&mut byte).unwrap() == 1, "no upgrade answer");
        response.push(byte[0]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    stream
}

/// Reads server frames until a Close; returns its code. Bounded by the read timeout.
pub fn read_close_code(stream: &mut TcpStream) -> Option<u16> {
    for _ in 0..10_000 {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).ok()?;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                stream.read_exact(&mut b).ok()?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                stream.read_exact(&mut b).ok()?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).ok()?;
        if head[0] & 0x0f == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
    None
}
