//! A TCP proxy the chaos campaign puts between two services, so that it can
//! cut the link (every connection dropped, new ones closed at once) or slow
//! it (every chunk of data held back) and heal it again.
//!
//! The proxy forwards bytes and knows nothing of HTTP: what the services see
//! is exactly what a broken or congested network gives them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long a slowed link holds back each chunk of data.
pub const SLOW_LINK_DELAY_MS: u64 = 400;

/// The largest chunk copied at once.
const CHUNK_BYTES: usize = 16 * 1024;

/// What the link does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Healthy,
    Cut,
    Slow,
}

/// One proxy in front of one instance of a service.
pub struct Proxy {
    /// Where clients connect: `http://127.0.0.1:<port>`.
    pub url: String,
    state: watch::Sender<LinkState>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (state, watcher) = watch::channel(LinkState::Healthy);
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, upstream, watcher, stop.clone()));
        Ok(Proxy { url, state, stop })
    }

    pub fn set(&self, state: LinkState) {
        self.state.send_replace(state);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    state: watch::Receiver<LinkState>,
    stop: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(error) => {
                    tracing::warn!(%error, "chaos proxy cannot accept; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if *state.borrow() == LinkState::Cut {
            // A cut link: the connection is closed as soon as it opens.
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, upstream, state.clone(), stop.clone()));
    }
}

/// Copies both ways until either side closes, the link is cut or the proxy
/// stops.
async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    mut state: watch::Receiver<LinkState>,
    stop: CancellationToken,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let state_for_copies = Arc::new(state.clone());
    let outbound = copy(client_read, server_write, state_for_copies.clone());
    let inbound = copy(server_read, client_write, state_for_copies);
    let cut = async {
        loop {
            if *state.borrow_and_update() == LinkState::Cut {
                return;
            }
            if state.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    // Dropping the halves closes both connections.
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = cut => {}
        _ = async { tokio::join!(outbound, inbound) } => {}
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<watch::Receiver<LinkState>>,
) {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if *state.borrow() == LinkState::Slow {
            tokio::time::sleep(Duration::from_millis(SLOW_LINK_DELAY_MS)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 64];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 || stream.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(url: &str) -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(url.trim_start_matches("http://")).await?;
        stream.write_all(b"ping").await?;
        let mut answer = vec![0u8; 4];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn forwards_cuts_slows_and_heals() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        assert_eq!(round_trip(&proxy.url).await.unwrap(), b"ping");

        proxy.set(LinkState::Cut);
        assert!(round_trip(&proxy.url).await.is_err());

        proxy.set(LinkState::Slow);
        let began = std::time::Instant::now();
        assert_eq!(round_trip(&proxy.url).await.unwrap(), b"ping");
        assert!(began.elapsed() >= Duration::from_millis(SLOW_LINK_DELAY_MS));

        proxy.set(LinkState::Healthy);
        assert_eq!(round_trip(&proxy.url).await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn a_cut_drops_open_connections() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.url.trim_start_matches("http://"))
            .await
            .unwrap();
        stream.write_all(b"ping").await.unwrap();
        let mut answer = [0u8; 4];
        stream.read_exact(&mut answer).await.unwrap();
        proxy.set(LinkState::Cut);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .expect("the cut closes the connection");
        assert!(read.is_err() || rest.is_empty());
    }
}
