//! The admin API through real HTTP (curl and raw sockets) against a provisiond started
//! from this library: every route with good and bad input, the status codes, roles,
//! uploads, slow clients, and the OpenAPI document.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789";
const OPERATOR: &str = "operator-token-0123456789";
const VIEWER: &str = "viewer-token-0123456789";

/// A provisiond serving a fresh store, stopped when dropped.
struct Lab {
    _dir: tempfile::TempDir,
    root: PathBuf,
    api: SocketAddr,
    _server: common::Provisiond,
}

impl Lab {
    fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("imports")).unwrap();
        std::fs::write(
            root.join("provisiond.toml"),
            format!(
                "store = \"store\"\n[nbd]\nlisten = \"127.0.0.1:0\"\n\
                 [api]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN}\"\nimport_folder = \"imports\"\n\
                 [[api.tokens]]\nname = \"ops\"\ntoken = \"{OPERATOR}\"\nrole = \"operator\"\n\
                 [[api.tokens]]\nname = \"wall\"\ntoken = \"{VIEWER}\"\nrole = \"viewer\"\n"
            ),
        )
        .unwrap();
        let server = common::Provisiond::start(&root.join("provisiond.toml"));
        let api = server.api.unwrap();
        Lab {
            _dir: dir,
            root,
            api,
            _server: server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// `curl -X method` with the token and a JSON body; the status and the JSON answer.
    fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let curl = testkit::peer("curl").expect("curl");
        let mut cmd = Command::new(curl);
        cmd.args([
            "-s",
            "-X",
            method,
            "--max-time",
            "60",
            "-w",
            "\n%{http_code}",
        ]);
        if !token.is_empty() {
            cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        if let Some(body) = body {
            cmd.args([
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
            ]);
        }
        let out = testkit::run(cmd.arg(self.url(path)));
        let (text, status) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
        let value = serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()));
        (status.parse().unwrap_or(0), value)
    }

    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, ADMIN, body)
    }

    /// Polls a job until it ends.
    fn job(&self, started: &Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, job) = self.admin("GET", &format!("/v1/jobs/{}", started["id"]), None);
            assert_eq!(status, 200, "{job}");
            if job["state"] != "running" {
                return job;
            }
            assert!(Instant::now() < deadline, "the job did not end: {job}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Asserts the status and the error kind of an error answer.
fn fails(answer: (u16, Value), status: u16, kind: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["kind"], kind, "{}", answer.1);
    assert!(
        answer.1["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        answer.1
    );
}

#[test]
fn vdisks_and_versions_through_the_routes() {
    let _curl = testkit::require_peer!("curl");
    let lab = Lab::start();
    let (status, vdisk) = lab.call(
        "POST",
        "/v1/vdisks",
        OPERATOR,
        Some(json!({"name": "os", "size": 4 << 20, "description": "test"})),
    );
    assert_eq!(status, 201, "{vdisk}");
    assert_eq!(vdisk["size"], 4 << 20);
    // Twice: a conflict; bad names, sizes and fields: invalid, nothing made.
    let again = Some(json!({"name": "os", "size": 4096}));
    fails(lab.admin("POST", "/v1/vdisks", again), 409, "conflict");
    let dots = Some(json!({"name": "../x", "size": 4096}));
    fails(lab.admin("POST", "/v1/vdisks", dots), 400, "invalid");
    let text = Some(json!({"name": "b", "size": "big"}));
    fails(lab.admin("POST", "/v1/vdisks", text), 422, "invalid");
    let extra = Some(json!({"name": "c", "size": 4096, "colour": "red"}));
    fails(lab.admin("POST", "/v1/vdisks", extra), 422, "invalid");
    assert!(!lab.root.join("store/..").join("x").exists());
    let (_, list) = lab.admin("GET", "/v1/vdisks", None);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    fails(lab.admin("GET", "/v1/vdisks/nope", None), 404, "not_found");

    // Versions: new, promote, merge as a job, remove the newest.
    let (status, v1) = lab.call(
        "POST",
        "/v1/vdisks/os/versions",
        OPERATOR,
        Some(json!({"note": "v1"})),
    );
    assert_eq!((status, &v1["state"]), (201, &json!("maintenance")), "{v1}");
    let (status, promoted) = lab.call("POST", "/v1/vdisks/os/versions/promote", OPERATOR, None);
    assert_eq!(
        (status, &promoted["state"]),
        (200, &json!("test")),
        "{promoted}"
    );
    fails(
        lab.admin("POST", "/v1/vdisks/nope/versions/promote", None),
        404,
        "not_found",
    );
    fails(
        lab.admin("POST", "/v1/vdisks/os/versions/9/merge", None),
        404,
        "not_found",
    );
    fails(
        lab.admin("POST", "/v1/vdisks/os/versions/x/merge", None),
        400,
        "invalid",
    );
    let (status, started) = lab.admin("POST", "/v1/vdisks/os/versions/1/merge", None);
    assert_eq!(status, 202, "{started}");
    let job = lab.job(&started);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["kind"], "merge");
    let (_, jobs) = lab.admin("GET", "/v1/jobs", None);
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    fails(lab.admin("GET", "/v1/jobs/99", None), 404, "not_found");
    let (_, detail) = lab.admin("GET", "/v1/vdisks/os", None);
    assert_eq!(detail["versions"].as_array().unwrap().len(), 2, "{detail}");
    // Removing "version 0" when 1 is the newest: refused, nothing removed.
    fails(
        lab.admin("DELETE", "/v1/vdisks/os/versions/0", None),
        409,
        "conflict",
    );
    let (status, _) = lab.admin("POST", "/v1/vdisks/os/versions", Some(json!({})));
    assert_eq!(status, 201);
    let (status, removed) = lab.admin("DELETE", "/v1/vdisks/os/versions/2", None);
    assert_eq!(status, 200, "{removed}");
    let (_, versions) = lab.admin("GET", "/v1/vdisks/os/versions", None);
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");

    // Remove the vDisk: an operator may not, an admin may.
    fails(
        lab.call("DELETE", "/v1/vdisks/os", OPERATOR, None),
        403,
        "forbidden",
    );
    let (status, _) = lab.admin("DELETE", "/v1/vdisks/os", None);
    assert_eq!(status, 200);
    fails(lab.admin("DELETE", "/v1/vdisks/os", None), 404, "not_found");
}

#[test]
fn devices_assignments_personality_and_collections_through_the_routes() {
    let _curl = testkit::require_peer!("curl");
    let lab = Lab::start();
    let (status, _) = lab.admin(
        "POST",
        "/v1/vdisks",
        Some(json!({"name": "os", "size": 1 << 20})),
    );
    assert_eq!(status, 201);
    let (status, c) = lab.call(
        "POST",
        "/v1/collections",
        OPERATOR,
        Some(json!({"name": "lab", "vdisk": "os"})),
    );
    assert_eq!(status, 201, "{c}");
    let (status, c) = lab.admin(
        "PATCH",
        "/v1/collections/lab",
        Some(json!({"auto_add": true})),
    );
    assert_eq!(
        (status, &c["auto_add"], &c["vdisk"]),
        (200, &json!(true), &json!("os")),
        "{c}"
    );
    let (status, c) = lab.admin("PATCH", "/v1/collections/lab", Some(json!({"vdisk": null})));
    assert_eq!((status, &c["vdisk"]), (200, &Value::Null), "{c}");
    fails(
        lab.admin(
            "PATCH",
            "/v1/collections/lab",
            Some(json!({"mode": "weird"})),
        ),
        400,
        "invalid",
    );

    let new = json!({"mac": "52:54:00:ee:00:01", "name": "pc1", "collection": "lab"});
    let (status, device) = lab.call("POST", "/v1/devices", OPERATOR, Some(new.clone()));
    assert_eq!(status, 201, "{device}");
    fails(lab.admin("POST", "/v1/devices", Some(new)), 409, "conflict");
    let bad_mac = Some(json!({"mac": "52:54:00:zz", "name": "pc2"}));
    fails(lab.admin("POST", "/v1/devices", bad_mac), 400, "invalid");
    fails(
        lab.call(
            "POST",
            "/v1/devices",
            VIEWER,
            Some(json!({"mac": "52:54:00:ee:00:09", "name": "v"})),
        ),
        403,
        "forbidden",
    );
    let (status, d) = lab.admin("PATCH", "/v1/devices/pc1", Some(json!({"type": "test"})));
    assert_eq!(
        (status, &d["type"], &d["collection"]),
        (200, &json!("test"), &json!("lab")),
        "{d}"
    );
    let (status, d) = lab.admin(
        "PATCH",
        "/v1/devices/pc1",
        Some(json!({"collection": null})),
    );
    assert_eq!((status, &d["collection"]), (200, &Value::Null), "{d}");
    fails(
        lab.admin("PATCH", "/v1/devices/nobody", Some(json!({}))),
        404,
        "not_found",
    );

    let (status, a) = lab.admin(
        "PUT",
        "/v1/devices/pc1/assignments/os",
        Some(json!({"mode": "private"})),
    );
    assert_eq!((status, &a[0]["mode"]), (200, &json!("private")), "{a}");
    fails(
        lab.admin(
            "PUT",
            "/v1/devices/pc1/assignments/nothing",
            Some(json!({})),
        ),
        404,
        "not_found",
    );
    let (status, a) = lab.admin(
        "PUT",
        "/v1/devices/pc1/assignments/os/pin",
        Some(json!({"version": 0})),
    );
    assert_eq!((status, &a[0]["pinned_version"]), (200, &json!(0)), "{a}");
    let (status, a) = lab.admin("GET", "/v1/devices/52:54:00:ee:00:01/assignments", None);
    assert_eq!((status, a.as_array().unwrap().len()), (200, 1), "{a}");

    let change = json!({"values": {"hostname": "pc1", "role": "kiosk"}});
    let (status, p) = lab.admin("PATCH", "/v1/devices/pc1/personality", Some(change));
    assert_eq!((status, &p["role"]), (200, &json!("kiosk")), "{p}");
    let secret = json!({"values": {"join_password": "hunter2"}, "secret": true});
    let (status, p) = lab.admin("PATCH", "/v1/devices/pc1/personality", Some(secret));
    assert_eq!(status, 200);
    assert!(!p.to_string().contains("hunter2"), "{p}");
    let (status, p) = lab.admin(
        "PATCH",
        "/v1/devices/pc1/personality",
        Some(json!({"values": {"role": null}})),
    );
    assert_eq!((status, p.get("role")), (200, None), "{p}");
    let (_, detail) = lab.call("GET", "/v1/devices/pc1", VIEWER, None);
    assert_eq!(detail["personality"]["hostname"], "pc1", "{detail}");
    assert!(!detail.to_string().contains("hunter2"), "{detail}");

    let (status, reset) = lab.call("POST", "/v1/devices/pc1/reset", OPERATOR, None);
    assert_eq!(status, 200, "{reset}");
    assert_eq!(reset["token"].as_str().unwrap().len(), 32, "{reset}");
    fails(
        lab.admin("POST", "/v1/devices/nobody/reset", None),
        404,
        "not_found",
    );
    fails(
        lab.call("POST", "/v1/devices/pc1/attach-secret", OPERATOR, None),
        403,
        "forbidden",
    );
    let (_, first) = lab.admin("POST", "/v1/devices/pc1/attach-secret", None);
    let (_, same) = lab.admin("POST", "/v1/devices/pc1/attach-secret", None);
    let (_, rotated) = lab.admin("POST", "/v1/devices/pc1/attach-secret?rotate=true", None);
    assert_eq!(first["attach_secret"], same["attach_secret"]);
    assert_ne!(first["attach_secret"], rotated["attach_secret"]);

    let (status, a) = lab.admin("DELETE", "/v1/devices/pc1/assignments/os", None);
    assert_eq!((status, a.as_array().unwrap().len()), (200, 0), "{a}");
    let (status, _) = lab.admin("DELETE", "/v1/devices/pc1", None);
    assert_eq!(status, 200);
    fails(lab.admin("GET", "/v1/devices/pc1", None), 404, "not_found");
    let (status, _) = lab.admin("DELETE", "/v1/collections/lab", None);
    assert_eq!(status, 200);
    let (_, list) = lab.admin("GET", "/v1/collections", None);
    assert_eq!(list, json!([]));

    // The audit log names the tokens, and pages.
    let (_, newest) = lab.admin("GET", "/v1/audit?limit=2", None);
    let newest = newest.as_array().unwrap().clone();
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0]["actor"], "api:admin");
    let before = newest[1]["id"].as_i64().unwrap();
    let (_, page) = lab.admin("GET", &format!("/v1/audit?limit=100&before={before}"), None);
    let page = page.as_array().unwrap();
    assert!(page.iter().all(|e| e["id"].as_i64().unwrap() < before));
    assert!(page.iter().any(|e| e["actor"] == "api:ops"), "{page:?}");
    fails(
        lab.admin("GET", "/v1/audit?limit=many", None),
        400,
        "invalid",
    );

    // The server's own routes.
    let (status, s) = lab.call("GET", "/v1/status", VIEWER, None);
    assert_eq!(
        (status, s["services"]["api"].is_string()),
        (200, true),
        "{s}"
    );
    let (status, s) = lab.call("GET", "/v1/sessions", VIEWER, None);
    assert_eq!((status, s), (200, json!([])));
    let (status, m) = lab.call("GET", "/v1/store/check", VIEWER, None);
    assert_eq!(status, 200, "{m}");
    fails(
        lab.call("POST", "/v1/store/clean", OPERATOR, None),
        403,
        "forbidden",
    );
    let (status, _) = lab.admin("POST", "/v1/store/clean", None);
    assert_eq!(status, 200);
    let (status, metrics) = lab.call("GET", "/metrics", VIEWER, None);
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap();
    for family in [
        "provision_sessions{mode=\"standard\"} 0",
        "provision_build_info{version=",
        "process_resident_memory_bytes",
        "process_open_fds",
        "provision_tftp_transfers_total 0",
    ] {
        assert!(metrics.contains(family), "no {family} in\n{metrics}");
    }
}

#[test]
fn tokens_are_checked_before_the_body_is_read_and_bodies_are_bounded() {
    let _curl = testkit::require_peer!("curl");
    let lab = Lab::start();
    fails(
        lab.call("GET", "/v1/devices", "", None),
        401,
        "unauthorized",
    );
    fails(
        lab.call("GET", "/v1/devices", "wrong-token-0123456789", None),
        401,
        "unauthorized",
    );
    fails(lab.admin("GET", "/v1/nothing", None), 404, "not_found");
    // A request that announces a big body and sends none is answered 401 at once.
    let mut s = TcpStream::connect(lab.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /v1/vdisks/big/import HTTP/1.1\r\nHost: x\r\nContent-Type: \
         application/octet-stream\r\nContent-Length: 1073741824\r\n\r\n"
    )
    .unwrap();
    let mut answer = [0u8; 12];
    s.read_exact(&mut answer)
        .expect("an answer before the body");
    assert_eq!(&answer, b"HTTP/1.1 401");
    // A JSON body over 64 KiB: 413, nothing made.
    let big = json!({"mac": "52:54:00:ee:00:02", "name": "x".repeat(70 << 10)});
    fails(
        lab.admin("POST", "/v1/devices", Some(big)),
        413,
        "too_large",
    );
    let (_, devices) = lab.admin("GET", "/v1/devices", None);
    assert_eq!(devices, json!([]));
}

#[test]
fn images_are_uploaded_in_the_body_or_taken_from_the_import_folder_only() {
    let curl = testkit::require_peer!("curl");
    let lab = Lab::start();
    let image: Vec<u8> = (0..3u32 << 20).map(|i| (i / 4096) as u8).collect();
    let file = lab.root.join("local.raw");
    std::fs::write(&file, &image).unwrap();
    let upload = |name: &str| {
        let out = testkit::run(Command::new(&curl).args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Authorization: Bearer {ADMIN}"),
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", file.display()),
            &lab.url(&format!("/v1/vdisks/{name}/import?description=uploaded")),
        ]));
        let (text, status) = out.trim_end().rsplit_once('\n').unwrap();
        (
            status.parse::<u16>().unwrap(),
            serde_json::from_str::<Value>(text).unwrap(),
        )
    };
    let (status, started) = upload("up");
    assert_eq!(status, 202, "{started}");
    let job = lab.job(&started);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["description"], "uploaded");
    // What arrived is what was sent, byte for byte.
    let stored = vhd::open_disk(&lab.root.join("store/up/v0.vhd"), true).unwrap();
    let mut back = vec![0u8; image.len()];
    stored.read_at(&mut back, 0).unwrap();
    assert!(back == image, "the uploaded image differs");
    // A name taken, or refused: answered before the body is taken in.
    fails(upload("up"), 409, "conflict");
    fails(upload("cache"), 400, "invalid");
    // No partial file is left behind.
    let uploads = lab.root.join("store/uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);

    // An upload that breaks off: no vDisk, no partial file.
    let mut s = TcpStream::connect(lab.api).unwrap();
    write!(
        s,
        "POST /v1/vdisks/cut/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n"
    )
    .unwrap();
    s.write_all(&[7u8; 1000]).unwrap();
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&uploads).unwrap().count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
    fails(lab.admin("GET", "/v1/vdisks/cut", None), 404, "not_found");

    // Server-side imports read the import folder only.
    std::fs::copy(&file, lab.root.join("imports/disk.raw")).unwrap();
    std::os::unix::fs::symlink(&file, lab.root.join("imports/link.raw")).unwrap();
    for outside in ["/etc/passwd", "../local.raw", "link.raw", "."] {
        let body = Some(json!({"file": outside}));
        fails(
            lab.admin("POST", "/v1/vdisks/x/import", body),
            403,
            "forbidden",
        );
    }
    let (status, started) = lab.admin(
        "POST",
        "/v1/vdisks/good/import",
        Some(json!({"file": "disk.raw"})),
    );
    assert_eq!(status, 202, "{started}");
    assert_eq!(lab.job(&started)["state"], "succeeded");
    fails(
        lab.call(
            "POST",
            "/v1/vdisks/y/import",
            OPERATOR,
            Some(json!({"file": "disk.raw"})),
        ),
        403,
        "forbidden",
    );
}

/// Sends half a request head from `from` and stalls.
fn stall(api: SocketAddr, from: [u8; 4]) -> Option<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::from((from, 0)).into()).ok()?;
    socket.connect(&api.into()).ok()?;
    let mut stream: TcpStream = socket.into();
    stream.write_all(b"GET /v1/status HT").ok()?;
    Some(stream)
}

#[test]
fn slow_clients_from_many_addresses_do_not_lock_the_operator_out() {
    let _curl = testkit::require_peer!("curl");
    let lab = Lab::start();
    // 800 stalled clients from 100 loopback addresses: more than the API holds at once.
    let slow: Vec<_> = (0..800u32)
        .filter_map(|i| {
            stall(
                lab.api,
                [127, 0, 1 + (i / 8 / 250) as u8, 2 + (i / 8 % 250) as u8],
            )
        })
        .collect();
    assert!(
        slow.len() >= 700,
        "only {} slow clients connected",
        slow.len()
    );
    let started = Instant::now();
    let (status, answer) = lab.call("GET", "/v1/status", VIEWER, None);
    assert_eq!(
        status, 200,
        "the API did not answer beside 800 slow clients: {answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered after {:?}",
        started.elapsed()
    );
    // Stalled heads are cut off: the first clients' connections are closed by now.
    let mut first = slow.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut rest = Vec::new();
    let closed = first.read_to_end(&mut rest).is_ok();
    assert!(closed, "a stalled client kept its connection");
}

/// Every path of the document, with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{name}", "os")
        .replace("{device}", "pc1")
        .replace("{vdisk}", "os")
        .replace("{number}", "0")
        .replace("{id}", "1")
}

#[test]
fn the_openapi_document_is_valid_and_names_every_route() {
    let _curl = testkit::require_peer!("curl");
    let lab = Lab::start();
    let (status, document) = lab.call("GET", "/v1/openapi.json", VIEWER, None);
    assert_eq!(status, 200);
    let spec = oas3::from_json(document.to_string()).expect("a valid OpenAPI document");
    spec.validate_version().expect("an OpenAPI 3.1 version");
    let mut documented = Vec::new();
    for (path, method, operation) in spec.operations() {
        // Every reference resolves.
        operation.request_body(&spec).expect("request body");
        operation.parameters(&spec).expect("parameters");
        assert!(!operation.responses(&spec).is_empty(), "{method} {path}");
        documented.push(format!("{method} {path}"));
    }
    documented.sort();
    let mut expected = vec![
        "GET /v1/vdisks",
        "POST /v1/vdisks",
        "GET /v1/vdisks/{name}",
        "DELETE /v1/vdisks/{name}",
        "POST /v1/vdisks/{name}/import",
        "GET /v1/vdisks/{name}/versions",
        "POST /v1/vdisks/{name}/versions",
        "POST /v1/vdisks/{name}/versions/promote",
        "POST /v1/vdisks/{name}/versions/rollback",
        "POST /v1/vdisks/{name}/versions/{number}/merge",
        "DELETE /v1/vdisks/{name}/versions/{number}",
        "GET /v1/devices",
        "POST /v1/devices",
        "GET /v1/devices/{device}",
        "PATCH /v1/devices/{device}",
        "DELETE /v1/devices/{device}",
        "POST /v1/devices/{device}/reset",
        "POST /v1/devices/{device}/attach-secret",
        "GET /v1/devices/{device}/assignments",
        "PUT /v1/devices/{device}/assignments/{vdisk}",
        "DELETE /v1/devices/{device}/assignments/{vdisk}",
        "PUT /v1/devices/{device}/assignments/{vdisk}/pin",
        "GET /v1/devices/{device}/personality",
        "PATCH /v1/devices/{device}/personality",
        "GET /v1/collections",
        "POST /v1/collections",
        "PATCH /v1/collections/{name}",
        "DELETE /v1/collections/{name}",
        "GET /v1/status",
        "GET /v1/sessions",
        "GET /v1/audit",
        "GET /v1/store/check",
        "POST /v1/store/clean",
        "GET /v1/jobs",
        "GET /v1/jobs/{id}",
    ];
    expected.sort();
    assert_eq!(documented, expected);
    // And every documented route is served: a viewer is refused or answered, never
    // told the route does not exist.
    for route in &expected {
        let (method, path) = route.split_once(' ').unwrap();
        let (status, answer) = lab.call(method, &concrete(path), VIEWER, None);
        let unknown = answer["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no route"));
        assert!(!unknown && status != 405, "{route}: {status} {answer}");
    }
}

#[test]
fn the_cli_uploads_and_follows_jobs() {
    let _curl = testkit::require_peer!("curl");
    let lab = Lab::start();
    let file = lab.root.join("local.raw");
    std::fs::write(&file, vec![9u8; 1 << 20]).unwrap();
    let client = provision_server::admin::remote::Client::new(&lab.url(""), Some(ADMIN), "tester");
    let line = |args: &[&str]| {
        <provision_server::admin::Line as clap::Parser>::try_parse_from(args.iter().copied())
            .unwrap()
            .command
    };
    let mut seen = Vec::new();
    let answer = client
        .run(
            &line(&["vdisk", "import", "os", file.to_str().unwrap(), "--upload"]),
            &mut |what, done, total| seen.push((what.to_owned(), done, total)),
        )
        .unwrap();
    assert!(
        answer.render(false).contains("os"),
        "{}",
        answer.render(false)
    );
    assert!(
        seen.iter()
            .any(|(what, done, total)| what.starts_with("uploading")
                && done == total
                && *total == 1 << 20)
    );
    assert!(
        seen.iter().any(|(what, _, _)| what == "importing os"),
        "{seen:?}"
    );
    let (code, message) = client
        .run(&line(&["vdisk", "show", "nothing"]), &mut |_, _, _| {})
        .unwrap_err();
    assert_eq!(code, 3, "{message}");
}

#[test]
fn one_connection_carries_many_requests() {
    let lab = Lab::start();
    let mut s = TcpStream::connect(lab.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
    for _ in 0..3 {
        write!(
            s,
            "GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {VIEWER}\r\n\r\n"
        )
        .unwrap();
        // The status line, the head, then exactly Content-Length bytes of body.
        let mut length = None;
        let mut line = String::new();
        loop {
            line.clear();
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
            assert!(!line.is_empty(), "the connection closed");
        }
        let mut body = vec![0u8; length.expect("a Content-Length")];
        reader.read_exact(&mut body).unwrap();
        let status: Value = serde_json::from_slice(&body).unwrap();
        assert!(status["uptime_seconds"].is_u64(), "{status}");
    }
}
