//! Last-byte synchronisation: every request of a wave is written whole but
//! its last byte on its own connection, and then every last byte is released
//! at once. A server cannot act on a request before its last byte arrives, so
//! the whole wave reaches it in the same instant, and a race window of a few
//! microseconds is enough for the requests to meet in it: no artificial
//! pause is needed to reproduce a race.
//!
//! HTTP/1.1 over plain TCP only (`http://` URLs), one connection per request,
//! closed after its answer.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// The largest answer read back, so a misbehaving server cannot fill memory.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// One request of a wave.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub path: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// One answer: its status and body.
#[derive(Debug, Clone)]
pub struct SyncResponse {
    pub status: u16,
    pub body: String,
}

/// Where a wave goes: `host:port` of an `http://` base URL.
#[derive(Debug, Clone)]
pub struct SyncTarget {
    authority: String,
    base_path: String,
}

/// Why a base URL cannot take a synchronised storm.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{base_url} is not a URL")]
    Url {
        base_url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("{base_url}: a synchronised storm speaks plain http:// only")]
    NotHttp { base_url: String },
    #[error("{base_url} has no host")]
    NoHost { base_url: String },
}

impl SyncTarget {
    pub fn parse(base_url: &str) -> Result<SyncTarget, TargetError> {
        let url = reqwest::Url::parse(base_url).map_err(|source| TargetError::Url {
            base_url: base_url.to_owned(),
            source,
        })?;
        if url.scheme() != "http" {
            return Err(TargetError::NotHttp {
                base_url: base_url.to_owned(),
            });
        }
        let host = url.host_str().ok_or_else(|| TargetError::NoHost {
            base_url: base_url.to_owned(),
        })?;
        let port = url.port_or_known_default().unwrap_or(80);
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Ok(SyncTarget {
            authority: format!("{host}:{port}"),
            base_path: url.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// Why one request of a wave got no answer that could be read.
#[derive(Debug, thiserror::Error)]
pub enum WaveError {
    #[error("cannot connect to {authority}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    /// Writing the request (all but its last byte, or the last byte) failed.
    #[error("cannot send the request")]
    Send(#[source] std::io::Error),
    #[error("cannot read the answer")]
    Read(#[source] std::io::Error),
    #[error("the answer is over {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("the answer is not HTTP")]
    Unreadable(#[from] ResponseError),
    /// The task that held the request's connection panicked or was
    /// cancelled.
    #[error("the request's task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Why bytes read back are not an HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("the answer has no end of headers")]
    NoEndOfHeaders,
    #[error("no status in {first_line:?}")]
    NoStatus { first_line: String },
}

fn encode(target: &SyncTarget, request: &SyncRequest) -> Vec<u8> {
    let mut head = format!(
        "POST {}{} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        target.base_path,
        request.path,
        target.authority,
        request.body.len()
    );
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(request.body.as_bytes());
    bytes
}

/// Sends `requests` as one wave: connects and writes all but the last byte of
/// each, then releases every last byte together and reads every answer. The
/// answers come back in the requests' order.
pub async fn send_wave(
    target: &SyncTarget,
    requests: &[SyncRequest],
) -> Vec<Result<SyncResponse, WaveError>> {
    let prepared = requests.iter().map(|request| {
        let target = target.clone();
        let bytes = encode(&target, request);
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(&target.authority)
                .await
                .map_err(|source| WaveError::Connect {
                    authority: target.authority.clone(),
                    source,
                })?;
            stream.set_nodelay(true).map_err(WaveError::Send)?;
            let (head, last) = bytes.split_at(bytes.len() - 1);
            stream.write_all(head).await.map_err(WaveError::Send)?;
            Ok::<_, WaveError>((stream, last[0]))
        })
    });
    let mut ready = Vec::with_capacity(requests.len());
    for handle in prepared.collect::<Vec<_>>() {
        ready.push(handle.await.unwrap_or_else(|error| Err(error.into())));
    }
    let connected = ready.iter().filter(|stream| stream.is_ok()).count();
    let barrier = Arc::new(Barrier::new(connected));
    let finishing: Vec<_> = ready
        .into_iter()
        .map(|stream| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let (mut stream, last) = stream?;
                barrier.wait().await;
                stream.write_all(&[last]).await.map_err(WaveError::Send)?;
                read_response(&mut stream).await
            })
        })
        .collect();
    let mut responses = Vec::with_capacity(finishing.len());
    for handle in finishing {
        responses.push(handle.await.unwrap_or_else(|error| Err(error.into())));
    }
    responses
}

async fn read_response(stream: &mut TcpStream) -> Result<SyncResponse, WaveError> {
    let mut bytes = Vec::new();
    let mut chunk = [0_u8; 8_192];
    loop {
        let read = stream.read(&mut chunk).await.map_err(WaveError::Read)?;
        if read == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..read]);
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(WaveError::TooLarge);
        }
    }
    Ok(parse_response(&bytes)?)
}

/// Parses an HTTP/1.1 answer read to its end (the connection was closed).
pub fn parse_response(bytes: &[u8]) -> Result<SyncResponse, ResponseError> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(ResponseError::NoEndOfHeaders)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| ResponseError::NoStatus {
            first_line: head.lines().next().unwrap_or("").to_owned(),
        })?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        decode_chunked(body)
    } else {
        body.to_owned()
    };
    Ok(SyncResponse { status, body })
}

fn decode_chunked(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}
