//! The little HTTP/1.1 the admin API needs: one request per connection, no bodies in,
//! small bodies out. Used by `provisiond` (server side) and `provision` (client side).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest request head accepted.
pub const MAX_HEAD: usize = 8 << 10;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The bearer token of an `Authorization: Bearer ...` header.
    pub bearer: Option<String>,
}

/// Parses a request head (everything up to the blank line).
///
/// ```
/// let head = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\n\r\n";
/// let req = provision_examples::http::parse_request(head).unwrap();
/// assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", "/metrics"));
/// assert_eq!(req.bearer.as_deref(), Some("s3cret"));
/// ```
pub fn parse_request(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target, version) = (first.next()?, first.next()?, first.next()?);
    if !version.starts_with("HTTP/1.") || first.next().is_some() {
        return None;
    }
    let bearer = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| value.trim().strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    Some(Request {
        method: method.to_owned(),
        path: target.split('?').next().unwrap_or("").to_owned(),
        bearer,
    })
}

/// A complete response with `Connection: close`.
pub fn response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `method path` to the API at `base` (`http://host:port`) and returns the status
/// and body.
pub fn fetch(base: &str, method: &str, path: &str, token: Option<&str>) -> Result<(u16, String), String> {
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{base}`: only http:// API addresses are supported"))?
        .trim_end_matches('/');
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let io = |e: std::io::Error| format!("provisiond API at {base}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io)?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(io)?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut reply = Vec::new();
    stream.take(16 << 20).read_to_end(&mut reply).map_err(io)?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("a malformed HTTP reply")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("a malformed HTTP status line")?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_heads_are_refused() {
        assert!(parse_request(b"GET /\r\n\r\n").is_none());
        assert!(parse_request(b"GET / SPDY/3\r\n\r\n").is_none());
        assert!(parse_request(&[0xff, 0xfe]).is_none());
        assert_eq!(parse_request(b"POST /a HTTP/1.0\r\n\r\n").unwrap().bearer, None);
    }

    #[test]
    fn responses_carry_their_length() {
        let r = String::from_utf8(response(404, "text/plain", "no")).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n") && r.contains("Content-Length: 2\r\n") && r.ends_with("\r\n\r\nno"));
    }
}
