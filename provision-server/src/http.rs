//! The little HTTP/1.1 the admin API needs: one request per connection, small JSON
//! bodies in, JSON (or a stream of JSON lines) out. Used by `provisiond` (server side)
//! and `provision --api` (client side). No keep-alive, no chunked encoding: a response
//! without `Content-Length` ends when the server closes the connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest request head accepted.
pub const MAX_HEAD: usize = 8 << 10;
/// Largest request body accepted.
pub const MAX_BODY: usize = 64 << 10;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The bearer token of an `Authorization: Bearer ...` header.
    pub bearer: Option<String>,
    /// `Content-Length`, 0 when absent.
    pub content_length: usize,
    /// `X-Provision-Actor`: who asks, for the audit log.
    pub actor: Option<String>,
}

/// Parses a request head (everything up to the blank line).
///
/// ```
/// let head = b"POST /v1/command?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\nContent-Length: 12\r\n\r\n";
/// let req = provision_server::http::parse_request(head).unwrap();
/// assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v1/command"));
/// assert_eq!(req.bearer.as_deref(), Some("s3cret"));
/// assert_eq!(req.content_length, 12);
/// ```
pub fn parse_request(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target, version) = (first.next()?, first.next()?, first.next()?);
    if !version.starts_with("HTTP/1.") || first.next().is_some() || !target.starts_with('/') {
        return None;
    }
    let mut request = Request {
        method: method.to_owned(),
        path: target.split('?').next().unwrap_or("").to_owned(),
        bearer: None,
        content_length: 0,
        actor: None,
    };
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        let value = value.trim();
        if name.eq_ignore_ascii_case("authorization") {
            request.bearer = value.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
        } else if name.eq_ignore_ascii_case("content-length") {
            request.content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("x-provision-actor") {
            request.actor = Some(value.to_owned());
        }
    }
    Some(request)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete response with `Connection: close`.
pub fn response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    )
    .into_bytes()
}

/// The head of a response whose body streams until the connection closes.
pub fn streaming_head(status: u16, content_type: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n",
        reason(status)
    )
    .into_bytes()
}

/// A response being read: its status, then its body line by line.
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: BufReader<TcpStream>,
}

impl Response {
    /// The whole body as text.
    pub fn text(mut self) -> Result<String, String> {
        let mut text = String::new();
        self.body
            .read_to_string(&mut text)
            .map_err(|e| format!("reading the API's answer: {e}"))?;
        Ok(text)
    }
}

/// Sends `method path` with a JSON `body` to the API at `base` (`http://host:port`).
///
/// `timeout` bounds each read: long commands stream progress lines meanwhile.
pub fn send(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    actor: &str,
    body: &str,
    timeout: Duration,
) -> Result<Response, String> {
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{base}`: only http:// API addresses are supported"))?
        .trim_end_matches('/');
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let io = |e: std::io::Error| format!("provisiond's API at {base}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}X-Provision-Actor: {actor}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(io)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("provisiond's API at {base}: a malformed HTTP status line"))?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(io)? == 0 || line == "\r\n" {
            break;
        }
    }
    Ok(Response {
        status,
        body: reader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_heads_are_refused() {
        assert!(parse_request(b"GET /\r\n\r\n").is_none());
        assert!(parse_request(b"GET / SPDY/3\r\n\r\n").is_none());
        assert!(parse_request(b"GET x HTTP/1.1\r\n\r\n").is_none());
        assert!(parse_request(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").is_none());
        assert!(parse_request(&[0xff, 0xfe]).is_none());
        assert_eq!(
            parse_request(b"POST /a HTTP/1.0\r\n\r\n").unwrap().bearer,
            None
        );
    }

    #[test]
    fn responses_carry_their_length() {
        let r = String::from_utf8(response(404, "text/plain", "no")).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 404 Not Found\r\n")
                && r.contains("Content-Length: 2\r\n")
                && r.ends_with("\r\n\r\nno")
        );
    }
}
