//! The admin HTTP API and the Prometheus `/metrics` endpoint.
//!
//! Every route answers JSON (`/metrics` answers Prometheus text). When a token is
//! configured, every request must carry `Authorization: Bearer <token>`.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /metrics` | sessions, traffic, errors, write caches, TFTP |
//! | `GET /v1/status` | version, uptime, services, sessions |
//! | `GET /v1/sessions` | open sessions with traffic and write-cache use |
//! | `POST /v1/sessions/{device}/reset` | the device's next boot starts now |
//! | `GET /v1/vdisks`, `/v1/vdisks/{name}`, `/v1/vdisks/{name}/versions` | vDisks |
//! | `GET /v1/devices`, `/v1/devices/{mac or name}` | devices |
//! | `GET /v1/collections`, `GET /v1/audit` | collections, audit log |
//! | `POST /v1/command` | any `provision` command: `{"args": [...], "json": bool}` |
//!
//! `POST /v1/command` answers a stream of JSON lines: `{"progress": {...}}` while disk
//! work runs, then `{"exit": 0, "output": "..."}` or `{"exit": N, "error": "..."}`,
//! with `provision`'s exit codes. Other routes answer 200, or 400/404/409/403/500 with
//! `{"error": "..."}`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admin::{self, Command, Line, Out, Reach, SessionsCommand, VdiskCommand};
use crate::http::{self, MAX_BODY, MAX_HEAD, Request};
use clap::Parser;
use provision_core::{BootCause, Error, Mac, Sessions, Store};
use pxe::driver::DriverStats;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::metrics::{self, TftpCounters};

/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;
/// Connections one address may hold at once; more are closed at once, so slow or
/// silent clients from one host cannot take every slot from the operator.
const PER_SOURCE: usize = 8;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the API serves from.
pub struct Api {
    /// The store folder; each command opens it with the caller as the audit actor.
    pub store_dir: PathBuf,
    /// The only folder `vdisk import` reads images from.
    pub import_folder: PathBuf,
    pub sessions: Sessions,
    /// The bearer tokens that open the API; none: every client is `anonymous` with
    /// every right (loopback only, which the configuration enforces).
    pub tokens: Vec<Credential>,
    pub started: Instant,
    /// The services' addresses, for `/v1/status`.
    pub services: Value,
    pub tftp: Arc<TftpCounters>,
    /// The ProxyDHCP service's counters, when it runs.
    pub dhcp: Option<Arc<DriverStats>>,
}

/// Binds `listen` and serves the API in a task; returns it and the bound address.
pub async fn start(
    listen: SocketAddr,
    mut api: Api,
) -> Result<(tokio::task::JoinHandle<()>, SocketAddr), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen for the API on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    api.services["api"] = addr.to_string().into();
    tracing::info!(%addr, tokens = api.tokens.len(), "admin API listening");
    Ok((tokio::spawn(serve(listener, Arc::new(api))), addr))
}

/// Serves the API until the task is dropped.
async fn serve(listener: TcpListener, api: Arc<Api>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let sources = Sources::default();
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "API: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(source) = sources.enter(peer.ip()) else {
            tracing::debug!(%peer, "API: too many connections from this address; closing");
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _source = source;
            if let Err(e) = connection(stream, &api).await {
                tracing::debug!(%peer, error = %e, "API connection ended");
            }
        });
    }
}

/// Connections per source address.
#[derive(Clone, Default)]
struct Sources(Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>);

/// One connection's share of its address's allowance, given back when dropped.
struct Source {
    sources: Sources,
    ip: std::net::IpAddr,
}

impl Sources {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<std::net::IpAddr, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A share for a connection from `ip`, unless it holds [`PER_SOURCE`] already.
    fn enter(&self, ip: std::net::IpAddr) -> Option<Source> {
        let mut counts = self.lock();
        let count = counts.entry(ip).or_default();
        if *count >= PER_SOURCE {
            return None;
        }
        *count += 1;
        Some(Source {
            sources: self.clone(),
            ip,
        })
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let mut counts = self.sources.lock();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

async fn connection(mut stream: TcpStream, api: &Arc<Api>) -> std::io::Result<()> {
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(request)) => request,
        Ok(Err(status)) => {
            return reply(
                &mut stream,
                status,
                json!({"error": "a malformed or oversized request"}),
            )
            .await;
        }
        Err(_) => {
            return reply(
                &mut stream,
                400,
                json!({"error": "request not received in time"}),
            )
            .await;
        }
    };
    let (req, body) = request;
    let Some(who) = identify(api, req.bearer.as_deref().unwrap_or("")) else {
        return reply(
            &mut stream,
            401,
            json!({"error": "missing or wrong bearer token"}),
        )
        .await;
    };
    let segments: Vec<String> = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    tracing::debug!(method = req.method, path = req.path, "API request");
    let args: Vec<&str> = match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["metrics"]) => {
            let text = metrics::render(
                &api.sessions,
                &api.tftp,
                api.dhcp.as_deref(),
                api.started.elapsed(),
            );
            let response = http::response(200, "text/plain; version=0.0.4", &text);
            return stream.write_all(&response).await;
        }
        ("POST", ["v1", "command"]) => return command(stream, api, &who, &req, &body).await,
        ("GET", ["v1", "status"]) => vec!["status"],
        ("GET", ["v1", "sessions"]) => vec!["sessions", "list"],
        ("POST", ["v1", "sessions", device, "reset"]) => vec!["sessions", "reset", device],
        ("GET", ["v1", "vdisks"]) => vec!["vdisk", "list"],
        ("GET", ["v1", "vdisks", name]) => vec!["vdisk", "show", name],
        ("GET", ["v1", "vdisks", name, "versions"]) => vec!["version", "list", name],
        ("GET", ["v1", "devices"]) => vec!["device", "list"],
        ("GET", ["v1", "devices", device]) => vec!["device", "show", device],
        ("GET", ["v1", "collections"]) => vec!["collection", "list"],
        ("GET", ["v1", "audit"]) => vec!["audit"],
        (
            _,
            ["metrics"]
            | [
                "v1",
                "command" | "status" | "sessions" | "vdisks" | "devices" | "collections" | "audit",
                ..,
            ],
        ) => {
            return reply(
                &mut stream,
                405,
                json!({"error": format!("{} is not allowed on {}", req.method, req.path)}),
            )
            .await;
        }
        _ => {
            return reply(
                &mut stream,
                404,
                json!({"error": format!("no route {}", req.path)}),
            )
            .await;
        }
    };
    let args = args.into_iter().map(str::to_owned).collect();
    let (api2, who) = (api.clone(), who.with_claim(&req));
    let outcome =
        tokio::task::spawn_blocking(move || execute(&api2, args, true, &who, &mut |_, _, _| {}))
            .await
            .unwrap_or_else(|e| Err((1, format!("the command failed: {e}"))));
    match outcome {
        Ok(output) => {
            let body = serde_json::from_str(&output).unwrap_or(Value::String(output));
            reply(&mut stream, 200, body).await
        }
        Err((code, message)) => {
            let status = match code {
                2 => 400,
                3 => 404,
                4 => 409,
                5 => 403,
                _ => 500,
            };
            reply(&mut stream, status, json!({"error": message})).await
        }
    }
}

/// `POST /v1/command`: runs one `provision` command line and streams its progress.
async fn command(
    mut stream: TcpStream,
    api: &Arc<Api>,
    who: &Identity,
    req: &Request,
    body: &[u8],
) -> std::io::Result<()> {
    let parsed: Result<(Vec<String>, bool), String> = serde_json::from_slice::<Value>(body)
        .map_err(|e| e.to_string())
        .and_then(|v| {
            let args =
                serde_json::from_value(v["args"].clone()).map_err(|e| format!("args: {e}"))?;
            Ok((args, v["json"].as_bool().unwrap_or(false)))
        });
    let (args, json_out) =
        match parsed {
            Ok(parsed) => parsed,
            Err(e) => return reply(
                &mut stream,
                400,
                json!({"error": format!("body must be {{\"args\": [...], \"json\": bool}}: {e}")}),
            )
            .await,
        };
    stream
        .write_all(&http::streaming_head(200, "application/x-ndjson"))
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let (api2, who) = (api.clone(), who.with_claim(req));
    let task = tokio::task::spawn_blocking(move || {
        let mut last = Instant::now();
        let mut progress = |what: &str, done: u64, total: u64| {
            if done >= total || last.elapsed() >= Duration::from_millis(200) {
                last = Instant::now();
                let _ = tx.send(json!({"progress": {"what": what, "done": done, "total": total}}));
            }
        };
        let line = match execute(&api2, args, json_out, &who, &mut progress) {
            Ok(output) => json!({"exit": 0, "output": output}),
            Err((code, error)) => json!({"exit": code, "error": error}),
        };
        let _ = tx.send(line);
    });
    while let Some(line) = rx.recv().await {
        // A client that went away does not stop the command: it runs to its end.
        if stream
            .write_all(format!("{line}\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = task.await;
    Ok(())
}

/// Runs one command line; `Err((exit code, message))` on failure.
fn execute(
    api: &Api,
    args: Vec<String>,
    json_out: bool,
    who: &Identity,
    progress: admin::Progress<'_>,
) -> Result<String, (u8, String)> {
    let line = Line::try_parse_from(args).map_err(|e| (2, e.render().to_string()))?;
    let needed = match line.command.reach() {
        Reach::Reads => Role::Viewer,
        Reach::Changes => Role::Operator,
        Reach::Destroys => Role::Admin,
    };
    if who.role < needed {
        return Err((
            5,
            format!(
                "the token `{}` is a {:?} token; this command needs {needed:?}",
                who.name, who.role
            ),
        ));
    }
    let actor = who.actor.as_str();
    let fail = |e: Error| (admin::exit_code(&e), e.to_string());
    let out = Out { json: json_out };
    let store = || {
        Store::open(&api.store_dir)
            .map(|s| s.with_actor(actor))
            .map_err(fail)
    };
    match line.command {
        Command::Status => Ok(out.object(&status(api))),
        Command::Sessions(SessionsCommand::List) => {
            Ok(out.sessions(&api.sessions.list(), &api.sessions.usage()))
        }
        Command::Sessions(SessionsCommand::Reset { device }) => {
            let mac: Mac = match device.parse() {
                Ok(mac) => mac,
                Err(_) => store()?.device(&device).map_err(fail)?.mac,
            };
            let new = api
                .sessions
                .start_boot(mac, BootCause::Reset, None)
                .map_err(fail)?;
            tracing::info!(%mac, boot = new.boot.number, actor, "device reset through the API");
            Ok(out.object(&json!({
                "device": mac.to_string(),
                "boot": new.boot.number,
                "token": new.boot.token.to_string(),
                "sessions_ended": new.sessions_ended,
                "write_caches_dropped": new.caches_dropped,
            })))
        }
        Command::Vdisk(VdiskCommand::Import {
            name,
            file,
            description,
        }) => {
            let file = confine(&api.import_folder, &file).map_err(|why| (5, why))?;
            let command = Command::Vdisk(VdiskCommand::Import {
                name,
                file,
                description,
            });
            admin::run(&store()?, command, json_out, progress, &|_| false).map_err(fail)
        }
        command => {
            let in_use = |file: &str| api.sessions.file_in_use(file);
            admin::run(&store()?, command, json_out, progress, &in_use).map_err(fail)
        }
    }
}

/// The image `file` names inside `folder` (a relative name is taken from there): the
/// API reads no file outside it, whatever the spelling (`..`, absolute paths, symlinks).
fn confine(folder: &Path, file: &Path) -> Result<PathBuf, String> {
    let root = folder.canonicalize().map_err(|e| {
        format!(
            "imports through the API come from the import folder {}, which cannot be used: {e}",
            folder.display()
        )
    })?;
    let candidate = root.join(file);
    let outside = || {
        format!(
            "{} is not in the import folder {}: put the image there (symlinks out of it do \
             not count)",
            file.display(),
            root.display()
        )
    };
    let real = candidate.canonicalize().map_err(|_| outside())?;
    if !real.starts_with(&root) || real == root {
        return Err(outside());
    }
    Ok(real)
}

fn status(api: &Api) -> Value {
    let live = api.sessions.list();
    let cache: u64 = api.sessions.usage().iter().map(|u| u.cache_bytes).sum();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": api.started.elapsed().as_secs(),
        "store": api.store_dir.display().to_string(),
        "services": api.services,
        "sessions": live.len(),
        "write_cache_bytes": cache,
    })
}

/// What a token may do, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads only.
    Viewer,
    /// Day-to-day changes.
    Operator,
    /// Everything.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!("no role {other:?}")),
        }
    }
}

/// The tokens `config` names: `token` as `admin`, and `tokens` with their roles.
pub fn credentials(config: &crate::config::Api) -> Result<Vec<Credential>, String> {
    let mut all = Vec::new();
    if !config.token.is_empty() {
        all.push(Credential {
            name: "admin".to_owned(),
            token: config.token.clone(),
            role: Role::Admin,
        });
    }
    for t in &config.tokens {
        all.push(Credential {
            name: t.name.clone(),
            token: t.token.clone(),
            role: t
                .role
                .parse()
                .map_err(|e| format!("api.tokens `{}`: {e}", t.name))?,
        });
    }
    Ok(all)
}

/// A bearer token the API accepts.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Who holds it.
    pub name: String,
    /// The secret.
    pub token: String,
    /// What it may do.
    pub role: Role,
}

/// Who a request comes from: the name and role of its token, and the audit actor.
#[derive(Debug, Clone)]
struct Identity {
    name: String,
    role: Role,
    actor: String,
}

/// The identity of the token `bearer`, if the API accepts it.
fn identify(api: &Api, bearer: &str) -> Option<Identity> {
    if api.tokens.is_empty() {
        return Some(Identity::new("anonymous", Role::Admin));
    }
    // Every token is compared, whichever matches: the time tells nothing.
    let mut found = None;
    for credential in &api.tokens {
        if same(bearer, &credential.token) {
            found = Some(Identity::new(&credential.name, credential.role));
        }
    }
    found
}

impl Identity {
    fn new(name: &str, role: Role) -> Self {
        Self {
            name: name.to_owned(),
            role,
            actor: format!("api:{name}"),
        }
    }

    /// The audit actor: the token's name, and what the client says it is
    /// (`X-Provision-Actor`, for information only) when that differs.
    fn with_claim(&self, req: &Request) -> Self {
        let claim: String = req
            .actor
            .as_deref()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        let actor = if claim.is_empty() || claim == self.name {
            format!("api:{}", self.name)
        } else {
            format!("api:{} (says {claim})", self.name)
        };
        Self {
            actor,
            ..self.clone()
        }
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a request head and its body; `Err(status)` when malformed or too large.
async fn read_request(stream: &mut TcpStream) -> Result<(Request, Vec<u8>), u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(413);
        }
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let req = http::parse_request(&buf[..head_end - 2]).ok_or(400u16)?;
    if req.content_length > MAX_BODY {
        return Err(413);
    }
    let mut body = buf.split_off(head_end);
    while body.len() < req.content_length {
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(req.content_length);
    Ok((req, body))
}

async fn reply(stream: &mut TcpStream, status: u16, body: Value) -> std::io::Result<()> {
    stream
        .write_all(&http::response(
            status,
            "application/json",
            &format!("{body}\n"),
        ))
        .await
}

#[cfg(test)]
mod tests {
    use super::{percent_decode, same};

    #[test]
    fn path_segments_are_decoded() {
        assert_eq!(percent_decode("52%3A54%3a00"), "52:54:00");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cre", "s3cret"));
        assert!(!same("s3creT", "s3cret"));
    }
}
