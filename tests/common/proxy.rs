//! A fault-injecting TCP proxy between a client and a server on 127.0.0.1: cut connections
//! (FIN or RST), stall both directions (a half-open path), add delay. Scripted from the test.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How a cut ends the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// An orderly TCP close (FIN) to both sides, without any WebSocket Close frame.
    Fin,
    /// A reset (RST) to both sides.
    Rst,
}

#[derive(Debug, Clone, Copy, Default)]
struct Control {
    /// Connections opened before a cut with a higher number end.
    cut_generation: u64,
    cut: Option<Cut>,
    /// Nothing is read or forwarded in either direction.
    stalled: bool,
    /// Each chunk waits this long before it is forwarded.
    delay: Duration,
    /// New connections are accepted and closed at once.
    refuse: bool,
    /// Connections are cut (FIN) after living this long.
    lifetime: Option<Duration>,
}

/// The proxy; it runs on the current actix/tokio runtime until dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    control: watch::Sender<Control>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Proxy {
    /// Listens on an ephemeral port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (control, watcher) = watch::channel(Control::default());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        actix_rt::spawn(async move {
            let mut watcher = watcher;
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    changed = watcher.changed() => {
                        if changed.is_err() {
                            return; // the proxy was dropped
                        }
                        continue;
                    }
                };
                let Ok((client, _)) = accepted else { continue };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let ctl = watcher.clone();
                if ctl.borrow().refuse {
                    drop(client);
                    continue;
                }
                actix_rt::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        pipe(client, server, ctl).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            control,
            accepted,
        }
    }

    /// The URL of the WebSocket route behind the proxy.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Ends every connection open now.
    pub fn cut(&self, how: Cut) {
        self.control.send_modify(|c| {
            c.cut_generation += 1;
            c.cut = Some(how);
        });
    }

    /// Stops (or resumes) forwarding in both directions: both peers see silence.
    pub fn stall(&self, stalled: bool) {
        self.control.send_modify(|c| c.stalled = stalled);
    }

    /// Delays every forwarded chunk.
    pub fn delay(&self, delay: Duration) {
        self.control.send_modify(|c| c.delay = delay);
    }

    /// Accepts and at once closes new connections (or stops doing so).
    pub fn refuse(&self, refuse: bool) {
        self.control.send_modify(|c| c.refuse = refuse);
    }

    /// Cuts (FIN) every new connection once it has lived `lifetime` (None: no limit).
    pub fn lifetime(&self, lifetime: Option<Duration>) {
        self.control.send_modify(|c| c.lifetime = lifetime);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn pipe(mut client: TcpStream, mut server: TcpStream, ctl: watch::Receiver<Control>) {
    let born = ctl.borrow().cut_generation;
    let deadline = ctl
        .borrow()
        .lifetime
        .map(|l| tokio::time::Instant::now() + l);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let cut = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        // The two directions run independently, so neither can block the other.
        let both = async {
            tokio::join!(forward(cr, sw, ctl.clone()), forward(sr, cw, ctl.clone()));
        };
        tokio::select! {
            _ = both => None,
            cut = until_cut(ctl.clone(), born, deadline) => cut,
        }
    };
    if cut == Some(Cut::Rst) {
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
    // Dropping the streams closes both connections (FIN, or RST after zero linger).
}

/// Copies one direction until EOF or error, pausing while the proxy is stalled.
async fn forward<R, W>(mut from: R, mut to: W, mut ctl: watch::Receiver<Control>)
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while ctl.borrow().stalled {
            if ctl.changed().await.is_err() {
                return;
            }
        }
        tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => {
                    let delay = ctl.borrow().delay;
                    if !delay.is_zero() {
                        actix_rt::time::sleep(delay).await;
                    }
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            changed = ctl.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Resolves when this connection must be cut: by a cut issued after it was born, or when its
/// lifetime is over. None: the proxy is gone.
async fn until_cut(
    mut ctl: watch::Receiver<Control>,
    born: u64,
    deadline: Option<tokio::time::Instant>,
) -> Option<Cut> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                return Some(Cut::Fin);
            }
            changed = ctl.changed() => {
                if changed.is_err() {
                    return None;
                }
                let c = *ctl.borrow();
                if c.cut_generation > born {
                    return c.cut;
                }
            }
        }
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(3600)
}
