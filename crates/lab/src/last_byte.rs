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

impl SyncTarget {
    pub fn parse(base_url: &str) -> Result<SyncTarget, String> {
        let url = reqwest::Url::parse(base_url).map_err(|error| format!("{base_url}: {error}"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "{base_url}: a synchronised storm speaks plain http:// only"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("{base_url}: no host"))?;
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
) -> Vec<Result<SyncResponse, String>> {
    let prepared = requests.iter().map(|request| {
        let target = target.clone();
        let bytes = encode(&target, request);
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(&target.authority)
                .await
                .map_err(|error| format!("cannot connect to {}: {error}", target.authority))?;
            stream
                .set_nodelay(true)
                .map_err(|error| error.to_string())?;
            let (head, last) = bytes.split_at(bytes.len() - 1);
            stream
                .write_all(head)
                .await
                .map_err(|error| error.to_string())?;
            Ok::<_, String>((stream, last[0]))
        })
    });
    let mut ready = Vec::with_capacity(requests.len());
    for handle in prepared.collect::<Vec<_>>() {
        ready.push(
            handle
                .await
                .unwrap_or_else(|error| Err(format!("the connection task failed: {error}"))),
        );
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
                stream
                    .write_all(&[last])
                    .await
                    .map_err(|error| error.to_string())?;
                read_response(&mut stream).await
            })
        })
        .collect();
    let mut responses = Vec::with_capacity(finishing.len());
    for handle in finishing {
        responses.push(
            handle
                .await
                .unwrap_or_else(|error| Err(format!("the request task failed: {error}"))),
        );
    }
    responses
}

async fn read_response(stream: &mut TcpStream) -> Result<SyncResponse, String> {
    let mut bytes = Vec::new();
    let mut chunk = [0_u8; 8_192];
    loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|error| error.to_string())?;
        if read == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..read]);
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(format!("the answer is over {MAX_RESPONSE_BYTES} bytes"));
        }
    }
    parse_response(&bytes)
}

/// Parses an HTTP/1.1 answer read to its end (the connection was closed).
pub fn parse_response(bytes: &[u8]) -> Result<SyncResponse, String> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "the answer has no end of headers".to_owned())?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status in {:?}", head.lines().next().unwrap_or("")))?;
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
