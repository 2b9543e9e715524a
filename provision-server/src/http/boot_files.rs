//! The boot files over HTTP (`[http]`): the same files under the same names as over
//! TFTP (the boot-file folder, each device's iPXE script and personality), from the
//! same [`tftp::Provider`], so path confinement and who may fetch what are decided in
//! one place. Read-only and without a token: what a device fetches while it boots.
//!
//! GET and HEAD, keep-alive, single byte ranges (`Range`, 206 and 416), and an exact
//! `Content-Length` on every answer (UEFI shim and GRUB reject chunked bodies); no
//! directory listing. File bytes go out in chunks read on the blocking pool, so a slow
//! client holds one chunk of memory and its own connection, never others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tftp::{ErrorCode, Provider, Source};

use super::range::{Wanted, wanted};

/// Connections the boot-file service holds: devices booting at once, each with a few
/// (firmware, iPXE), and 8 per address; 10 s for a request head.
const LIMITS: super::Limits = super::Limits {
    max_connections: 4096,
    per_source: 8,
    head_time: Duration::from_secs(10),
};

/// Bytes read and sent at a time.
const CHUNK: usize = 256 << 10;

/// Binds `listen` and serves `files` there until the task is dropped.
pub(crate) async fn start(
    listen: SocketAddr,
    files: Arc<dyn Provider>,
) -> Result<(tokio::task::JoinHandle<()>, SocketAddr), String> {
    let listener = super::bind(listen, "boot files over HTTP").await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, "boot files served over HTTP");
    let router = Router::new().fallback(move |request: Request| answer(files.clone(), request));
    let serve = super::serve(listener, router, LIMITS, "http");
    Ok((tokio::spawn(serve), addr))
}

/// One request: the file its path names, whole or the range asked for.
async fn answer(files: Arc<dyn Provider>, request: Request) -> Response {
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
    };
    let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "no peer address\n");
    };
    let raw = request.uri().path();
    let Ok(path) = percent_encoding::percent_decode_str(raw).decode_utf8() else {
        return plain(StatusCode::BAD_REQUEST, "the path is not UTF-8\n");
    };
    if path.contains('\0') {
        return plain(StatusCode::BAD_REQUEST, "the path holds a NUL byte\n");
    }
    let path = path.trim_start_matches('/').to_owned();
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let opened = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || files.open(&path, peer)).await
    };
    let source = match opened {
        Ok(Ok(source)) => source,
        Ok(Err(e)) => return refused(&path, peer, &e),
        Err(_) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "opening the file failed\n",
            );
        }
    };
    let len = source.len();
    let (status, bytes) = match wanted(range.as_deref(), len) {
        Wanted::All => (StatusCode::OK, 0..len),
        Wanted::Part(part) => (StatusCode::PARTIAL_CONTENT, part),
        Wanted::Unsatisfiable => {
            let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            r.headers_mut()
                .insert(header::CONTENT_RANGE, value(&format!("bytes */{len}")));
            return r;
        }
    };
    tracing::info!(%peer, file = %path, status = status.as_u16(), bytes = bytes.end - bytes.start, head, "HTTP boot file");
    let body = if head {
        Body::empty()
    } else {
        Body::from_stream(chunks(source, bytes.clone()))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type(&path));
    h.insert(
        header::CONTENT_LENGTH,
        value(&(bytes.end - bytes.start).to_string()),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {}-{}/{len}", bytes.start, bytes.end - 1);
        h.insert(header::CONTENT_RANGE, value(&range));
    }
    r
}

/// The file's bytes `range` as a stream of chunks, each read on the blocking pool.
fn chunks(
    source: Arc<dyn Source>,
    range: std::ops::Range<u64>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::unfold(range.start, move |at| {
        let source = source.clone();
        let end = range.end;
        async move {
            if at >= end {
                return None;
            }
            let want = (end - at).min(CHUNK as u64) as usize;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want];
                let mut got = 0;
                while got < want {
                    match source.read_at(at + got as u64, &mut buf[got..])? {
                        0 => break,
                        n => got += n,
                    }
                }
                if got < want {
                    // The Content-Length is promised: end the connection rather
                    // than send fewer bytes than it says.
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file shrank while being sent",
                    ));
                }
                Ok(Bytes::from(buf))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match read {
                Ok(chunk) => Some((Ok(chunk), at + want as u64)),
                Err(e) => {
                    tracing::warn!(error = %e, "reading a boot file failed; the connection ends");
                    Some((Err(e), end))
                }
            }
        }
    })
}

/// The answer for a file the provider refused: 404 when it does not exist, 403 when
/// it may not be read (outside the folder, another device's script).
fn refused(path: &str, peer: SocketAddr, e: &tftp::Error) -> Response {
    let (code, message) = e.to_wire();
    let status = match code {
        ErrorCode::FileNotFound => StatusCode::NOT_FOUND,
        ErrorCode::AccessViolation => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    tracing::info!(%peer, file = %path, status = status.as_u16(), %message, "HTTP boot file refused");
    plain(status, &format!("{message}\n"))
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut r = (status, text.to_owned()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Scripts and personality are text; everything else (iPXE binaries, kernels,
/// initrds) is bytes.
fn content_type(path: &str) -> HeaderValue {
    let text = [".ipxe", ".personality", ".cfg", ".txt"]
        .iter()
        .any(|ext| path.ends_with(ext));
    HeaderValue::from_static(if text {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    })
}
