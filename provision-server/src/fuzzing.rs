//! Entry points of the fuzz targets `config` and `api_request`
//! (`fuzz/fuzz_targets/`), here so that the seed corpus replay tests and the fuzzer
//! call the very same code: the configuration parser with every check the services
//! make, and one request to the admin API's router (authentication, extractors,
//! handlers, errors) over a store with a vDisk and a device.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use percent_encoding::{AsciiSet, CONTROLS, percent_encode};

use crate::Config;
use crate::api::{self, Credential, Role};

/// Parses `data` (when UTF-8) as a configuration file and calls every check the
/// services make on it. Panics when one of them panics, or when a configuration that
/// parsed is refused by a check `parse` already made.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text, Path::new("/etc/provision")) else {
        return;
    };
    assert!(config.store.is_absolute() && config.tftp.root.is_absolute());
    config
        .session_settings()
        .expect("parse checked the sessions");
    config.api.check().expect("parse checked the API");
    api::credentials(&config.api).expect("parse checked the roles");
    config
        .nbd
        .server_config()
        .expect("parse checked the NBD settings");
    config
        .boot_settings()
        .expect("parse checked the boot settings");
    match config.dhcp_settings() {
        Ok(settings) => {
            if config.dhcp.mode == crate::config::DhcpMode::Full || config.dhcp.enabled {
                let _ = config.dhcp.full_config(settings.server_ip);
            }
        }
        Err(e) => assert!(!config.dhcp.enabled, "parse checked DHCP: {e}"),
    }
    let _ = config.dhcp.driver_config();
    let _ = config.auto_add.limits();
}

/// The admin token of [`ApiRequests`].
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";
/// Its viewer token.
pub const VIEWER_TOKEN: &str = "viewer-token-0123456789";
/// The device in its store.
pub const MAC: &str = "52:54:00:12:34:56";

/// Methods the first byte of an input chooses from.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PROPFIND",
];
/// Content types (bits 2-3 of the second byte).
const CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some("application/json"),
    Some("application/octet-stream"),
    Some("text/plain; charset=utf-8"),
];
/// What a percent-encoded path leaves as it is: everything but `/`, `?`, `=`, `&` and
/// the unreserved characters is encoded.
const ENCODED: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The admin API's router over a store in a folder, and a runtime to drive it; build
/// once, then call [`ApiRequests::request`] per input.
pub struct ApiRequests {
    router: axum::Router,
    runtime: tokio::runtime::Runtime,
}

impl ApiRequests {
    /// A store in `dir/store` with the vDisk `lab` and the device `seat-1` ([`MAC`]),
    /// an empty import folder `dir/imports`, and the router with an admin and a viewer
    /// token.
    ///
    /// # Errors
    ///
    /// When the store cannot be made.
    pub fn new(dir: &Path) -> Result<Self, String> {
        let store_dir = dir.join("store");
        let import_folder = dir.join("imports");
        std::fs::create_dir_all(&import_folder).map_err(|e| e.to_string())?;
        let store = provision_core::Store::open(&store_dir).map_err(|e| e.to_string())?;
        if store.vdisks().map_err(|e| e.to_string())?.is_empty() {
            provision_core::create_vdisk(&store, "lab", 1 << 20, "fuzzing")
                .map_err(|e| e.to_string())?;
            store
                .add_device(
                    MAC.parse()
                        .map_err(|e: provision_core::Error| e.to_string())?,
                    "seat-1",
                    None,
                    provision_core::DeviceType::Production,
                )
                .map_err(|e| e.to_string())?;
            store
                .assign("seat-1", "lab", provision_core::Mode::Standard, None)
                .map_err(|e| e.to_string())?;
        }
        let sessions = provision_core::Sessions::new(
            Arc::new(store),
            provision_core::SessionSettings::default(),
        )
        .map_err(|e| e.to_string())?;
        let api = api::Api {
            store_dir,
            import_folder,
            sessions: sessions.clone(),
            tokens: vec![
                Credential {
                    name: "admin".into(),
                    token: ADMIN_TOKEN.into(),
                    role: Role::Admin,
                },
                Credential {
                    name: "wall".into(),
                    token: VIEWER_TOKEN.into(),
                    role: Role::Viewer,
                },
            ],
            started: Instant::now(),
            services: Default::default(),
            metrics: crate::metrics::Metrics::new(
                sessions.clone(),
                Default::default(),
                None,
                Instant::now(),
            ),
        };
        let (router, _) = api::routes(Arc::new(api::State::new(api)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { router, runtime })
    }

    /// One request. The first byte chooses the method (bits 0-2); the second the
    /// token (bits 0-1: none, admin, viewer, wrong), the content type (bits 2-3) and
    /// whether the path is sent raw or percent-encoded (bit 4); the path runs to the
    /// first newline, the body is the rest. Panics when the router panics or answers
    /// a server error, or an error without a JSON body naming `error` and `kind`.
    pub fn request(&self, data: &[u8]) {
        let [method, flags, rest @ ..] = data else {
            return;
        };
        let (path, body) = match rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        let mut target = Vec::with_capacity(path.len() + 1);
        if path.first() != Some(&b'/') {
            target.push(b'/');
        }
        if flags & 0x10 == 0 {
            target.extend_from_slice(path);
        } else {
            target.extend(percent_encode(path, ENCODED).flat_map(str::bytes));
        }
        // What the HTTP parser refuses never reaches the router.
        let Ok(uri) = Uri::try_from(target) else {
            return;
        };
        let method = METHODS[usize::from(method & 7)];
        let mut request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("literal method"))
            .uri(uri);
        let token = [None, Some(ADMIN_TOKEN), Some(VIEWER_TOKEN), Some("wrong")];
        if let Some(token) = token[usize::from(flags & 3)] {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(content_type) = CONTENT_TYPES[usize::from((flags >> 2) & 3)] {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let Ok(request) = request.body(Body::from(body.to_vec())) else {
            return;
        };
        let what = format!("{method} {}", request.uri());
        let (status, headers, bytes) = self.send(request);
        check_answer(&what, method == "HEAD", status, &headers, &bytes);
    }

    /// Sends `request` to the router; its answer's status, headers and whole body.
    pub fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        self.runtime.block_on(async {
            let response = tower::ServiceExt::oneshot(self.router.clone(), request)
                .await
                .unwrap_or_else(|e| match e {});
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .expect("a response body in memory");
            (parts.status, parts.headers, bytes.to_vec())
        })
    }
}

/// A well-formed answer: no server error, and a JSON error body for every error.
fn check_answer(what: &str, head: bool, status: StatusCode, headers: &HeaderMap, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    assert!(!status.is_server_error(), "{what}: {status} {text}");
    let json = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.is_client_error() && !head {
        assert!(json, "{what}: {status} without a JSON body: {text}");
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!("{what}: {status} with a body that is not JSON ({e}): {text}")
        });
        assert!(
            value["error"].is_string() && value["kind"].is_string(),
            "{what}: {status} without `error` and `kind`: {text}"
        );
    } else if json && !head {
        serde_json::from_slice::<serde_json::Value>(body).unwrap_or_else(|e| {
            panic!("{what}: {status} with a body that is not JSON ({e}): {text}")
        });
    }
}
