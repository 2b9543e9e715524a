//! `provision --api URL`: each command line becomes a request to a route of
//! provisiond's API; long work (import, merge) is a job whose progress is polled.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::cli::{
    CollectionCommand, Command, DeviceCommand, SessionsCommand, StoreCommand, VdiskCommand,
    VersionCommand,
};
use super::render::Answer;
use crate::resources::{
    AssignmentChange, CollectionChange, ErrorView, ImportFromFolder, JobView, NewCollection,
    NewDevice, NewVdisk, NewVersion, PinChange,
};

/// How long to wait for a job (an import or merge) to end.
const JOB_TIME: Duration = Duration::from_secs(24 * 3600);

/// A failed command: `provision`'s exit code and what went wrong.
pub type Failure = (u8, String);

/// A client of provisiond's admin API.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
    actor: String,
}

/// A request: method, path (already encoded) and JSON body.
struct Call {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

impl Client {
    /// A client of the API at `url` (`http://` or `https://`).
    pub fn new(url: &str, token: Option<&str>, actor: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .build()
            .into();
        Self {
            agent,
            base: url.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            actor: actor.to_owned(),
        }
    }

    /// Runs `command` through the API; `progress` sees long work advance.
    pub fn run(
        &self,
        command: &Command,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<Answer, Failure> {
        let value = match command {
            Command::Vdisk(VdiskCommand::Import {
                name,
                file,
                description,
                upload: true,
            }) => {
                let job = self.upload(name, file, description, progress)?;
                self.follow(job, progress)?
            }
            Command::Vdisk(VdiskCommand::Import { .. })
            | Command::Version(VersionCommand::Merge { .. }) => {
                let job = decode(self.send(&route(command)?)?)?;
                self.follow(job, progress)?
            }
            _ => self.send(&route(command)?)?,
        };
        answer(command, value)
    }

    /// Sends `call`; the answer's JSON, or the API's error as a failure.
    fn send(&self, call: &Call) -> Result<Value, Failure> {
        let body = call
            .body
            .as_ref()
            .map(|b| b.to_string().into_bytes())
            .unwrap_or_default();
        let mut request = self.head(call.method, &call.path);
        if call.body.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        let request = request.body(body).map_err(|e| (2, e.to_string()))?;
        self.answer(self.agent.run(request))
    }

    /// `vdisk import --upload`: sends the image in the request body, with progress.
    fn upload(
        &self,
        name: &str,
        file: &Path,
        description: &str,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<JobView, Failure> {
        let image = std::fs::File::open(file)
            .map_err(|e| (1, format!("cannot read {}: {e}", file.display())))?;
        let total = image.metadata().map(|m| m.len()).unwrap_or(0);
        let what = format!("uploading {}", file.display());
        let mut reader = Counting {
            inner: image,
            done: 0,
            total,
            report: &mut |done, total| progress(&what, done, total),
        };
        let path = format!(
            "/v1/vdisks/{}/import?description={}",
            segment(name),
            segment(description)
        );
        let request = self
            .head("POST", &path)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", total.to_string())
            .body(ureq::SendBody::from_reader(&mut reader))
            .map_err(|e| (2, e.to_string()))?;
        decode(self.answer(self.agent.run(request))?)
    }

    /// Polls `job` until it ends; what it answered.
    fn follow(
        &self,
        mut job: JobView,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<Value, Failure> {
        let deadline = Instant::now() + JOB_TIME;
        let path = format!("/v1/jobs/{}", job.id);
        loop {
            progress(&job.what, job.done, job.total);
            match job.state.as_str() {
                "running" if Instant::now() < deadline => {}
                "running" => return Err((1, format!("{} did not end in time", job.what))),
                "succeeded" => return Ok(job.result.unwrap_or(Value::Null)),
                _ => return Err(failure(job.error.as_ref(), 0)),
            }
            std::thread::sleep(Duration::from_millis(200));
            job = decode(self.send(&Call {
                method: "GET",
                path: path.clone(),
                body: None,
            })?)?;
        }
    }

    fn head(&self, method: &str, path: &str) -> ureq::http::request::Builder {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("X-Provision-Actor", &self.actor);
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        request
    }

    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, Failure> {
        let mut response = response.map_err(|e| {
            (
                1,
                format!(
                    "cannot reach the API at {}: {e}\n(is provisiond running? use --store DIR \
                     to work on a store directly)",
                    self.base
                ),
            )
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| (1, format!("reading the API's answer: {e}")))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let error = serde_json::from_value::<ErrorView>(value.clone()).ok();
        Err(match error {
            Some(error) => failure(Some(&error), status),
            None => (1, format!("the API answered {status}: {value}")),
        })
    }
}

/// A reader that reports how much was read.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    total: u64,
    report: &'a mut dyn FnMut(u64, u64),
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.report)(self.done, self.total);
        Ok(n)
    }
}

/// The exit code and message of an API error (see [`super::exit_code`]).
fn failure(error: Option<&ErrorView>, status: u16) -> Failure {
    let Some(error) = error else {
        return (1, format!("the API answered {status}"));
    };
    let code = match error.kind.as_str() {
        "invalid" | "too_large" => 2,
        "not_found" => 3,
        "conflict" => 4,
        "refused" | "unauthorized" | "forbidden" => 5,
        _ => 1,
    };
    (code, error.error.clone())
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T, Failure> {
    serde_json::from_value(value)
        .map_err(|e| (1, format!("an answer the API should not give: {e}")))
}

/// A path segment or query value, percent-encoded.
fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The route of `command`.
fn route(command: &Command) -> Result<Call, Failure> {
    use Command as C;
    let get = |path: String| Call {
        method: "GET",
        path,
        body: None,
    };
    let with = |method: &'static str, path: String, body: Value| Call {
        method,
        path,
        body: Some(body),
    };
    let s = segment;
    Ok(match command {
        C::Status => get("/v1/status".into()),
        C::Audit { limit, before } => get(match before {
            Some(before) => format!("/v1/audit?limit={limit}&before={before}"),
            None => format!("/v1/audit?limit={limit}"),
        }),
        C::Sessions(SessionsCommand::List) => get("/v1/sessions".into()),
        C::Sessions(SessionsCommand::Reset { device }) => with(
            "POST",
            format!("/v1/devices/{}/reset", s(device)),
            Value::Null,
        ),
        C::Vdisk(c) => match c {
            VdiskCommand::List => get("/v1/vdisks".into()),
            VdiskCommand::Show { name } => get(format!("/v1/vdisks/{}", s(name))),
            VdiskCommand::Create {
                name,
                size,
                description,
            } => with(
                "POST",
                "/v1/vdisks".into(),
                json_of(&NewVdisk {
                    name: name.clone(),
                    size: *size,
                    description: description.clone(),
                }),
            ),
            VdiskCommand::Import {
                name,
                file,
                description,
                ..
            } => with(
                "POST",
                format!("/v1/vdisks/{}/import", s(name)),
                json_of(&ImportFromFolder {
                    file: file.display().to_string(),
                    description: description.clone(),
                }),
            ),
            VdiskCommand::Remove { name } => Call {
                method: "DELETE",
                path: format!("/v1/vdisks/{}", s(name)),
                body: None,
            },
        },
        C::Version(c) => match c {
            VersionCommand::List { vdisk } => get(format!("/v1/vdisks/{}/versions", s(vdisk))),
            VersionCommand::New { vdisk, note } => with(
                "POST",
                format!("/v1/vdisks/{}/versions", s(vdisk)),
                json_of(&NewVersion { note: note.clone() }),
            ),
            VersionCommand::Promote { vdisk } => with(
                "POST",
                format!("/v1/vdisks/{}/versions/promote", s(vdisk)),
                Value::Null,
            ),
            VersionCommand::Rollback { vdisk } => with(
                "POST",
                format!("/v1/vdisks/{}/versions/rollback", s(vdisk)),
                Value::Null,
            ),
            VersionCommand::Merge { vdisk, version } => with(
                "POST",
                format!("/v1/vdisks/{}/versions/{version}/merge", s(vdisk)),
                Value::Null,
            ),
            VersionCommand::Remove { vdisk } => Call {
                method: "DELETE",
                path: format!("/v1/vdisks/{}/versions/newest", s(vdisk)),
                body: None,
            },
        },
        C::Device(c) => match c {
            DeviceCommand::List => get("/v1/devices".into()),
            DeviceCommand::Show { device } => get(format!("/v1/devices/{}", s(device))),
            DeviceCommand::Add {
                mac,
                name,
                collection,
                device_type,
            } => with(
                "POST",
                "/v1/devices".into(),
                json_of(&NewDevice {
                    mac: mac.to_string(),
                    name: name.clone(),
                    collection: collection.clone(),
                    device_type: Some(device_type.as_str().to_owned()),
                }),
            ),
            DeviceCommand::Set(set) => with(
                "PATCH",
                format!("/v1/devices/{}", s(&set.device)),
                json_of(&set.change()),
            ),
            DeviceCommand::Remove { device } => Call {
                method: "DELETE",
                path: format!("/v1/devices/{}", s(device)),
                body: None,
            },
            DeviceCommand::AttachSecret { device, rotate } => with(
                "POST",
                format!("/v1/devices/{}/attach-secret?rotate={rotate}", s(device)),
                Value::Null,
            ),
        },
        C::Assign {
            device,
            vdisk,
            mode,
            position,
        } => with(
            "PUT",
            format!("/v1/devices/{}/assignments/{}", s(device), s(vdisk)),
            json_of(&AssignmentChange {
                mode: Some(mode.as_str().to_owned()),
                position: *position,
            }),
        ),
        C::Unassign { device, vdisk } => Call {
            method: "DELETE",
            path: format!("/v1/devices/{}/assignments/{}", s(device), s(vdisk)),
            body: None,
        },
        C::Pin {
            device,
            vdisk,
            version,
        } => with(
            "PUT",
            format!("/v1/devices/{}/assignments/{}/pin", s(device), s(vdisk)),
            json_of(&PinChange { version: *version }),
        ),
        C::Collection(c) => match c {
            CollectionCommand::List => get("/v1/collections".into()),
            CollectionCommand::Add(a) => with(
                "POST",
                "/v1/collections".into(),
                json_of(&NewCollection::from(a)),
            ),
            CollectionCommand::Set(change) => with(
                "PATCH",
                format!("/v1/collections/{}", s(&change.name)),
                json_of(&CollectionChange::from(change)),
            ),
            CollectionCommand::Remove { name } => Call {
                method: "DELETE",
                path: format!("/v1/collections/{}", s(name)),
                body: None,
            },
        },
        C::Personality(c) => match c.change() {
            None => get(format!("/v1/devices/{}/personality", s(c.device()))),
            Some((device, change)) => with(
                "PATCH",
                format!("/v1/devices/{}/personality", s(device)),
                json_of(&change),
            ),
        },
        C::Store(StoreCommand::Check { clean: false }) => get("/v1/store/check".into()),
        C::Store(StoreCommand::Check { clean: true }) => {
            with("POST", "/v1/store/clean".into(), Value::Null)
        }
        C::Store(StoreCommand::Init) => {
            return Err((
                2,
                "`store init` makes a store in a folder: use --store DIR".into(),
            ));
        }
        C::Store(StoreCommand::Backup { .. }) => {
            return Err((
                2,
                "`store backup` copies the store's files: run it on the machine that \
                 holds the store, with --store DIR (provisiond may keep running)"
                    .into(),
            ));
        }
    })
}

/// The answer to `command`, from the JSON the API answered.
fn answer(command: &Command, value: Value) -> Result<Answer, Failure> {
    use Command as C;
    Ok(match command {
        C::Status => Answer::Status(decode(value)?),
        C::Audit { .. } => Answer::Audit(decode(value)?),
        C::Sessions(SessionsCommand::List) => Answer::Sessions(decode(value)?),
        C::Sessions(SessionsCommand::Reset { .. }) => Answer::Reset(decode(value)?),
        C::Vdisk(VdiskCommand::List) => Answer::Vdisks(decode(value)?),
        C::Vdisk(VdiskCommand::Show { .. }) => Answer::Vdisk(decode(value)?),
        C::Vdisk(VdiskCommand::Create { .. } | VdiskCommand::Import { .. }) => {
            Answer::Vdisks(vec![decode(value)?])
        }
        C::Version(VersionCommand::List { .. }) => Answer::Versions(decode(value)?),
        C::Version(
            VersionCommand::New { .. }
            | VersionCommand::Promote { .. }
            | VersionCommand::Rollback { .. },
        ) => Answer::Versions(vec![decode(value)?]),
        C::Device(DeviceCommand::List) => Answer::Devices(decode(value)?),
        C::Device(DeviceCommand::Show { .. }) => Answer::Device(decode(value)?),
        C::Device(DeviceCommand::AttachSecret { .. }) => Answer::AttachSecret(decode(value)?),
        C::Device(_) => Answer::Devices(vec![decode(value)?]),
        C::Assign { .. } | C::Unassign { .. } | C::Pin { .. } => {
            Answer::Assignments(decode(value)?)
        }
        C::Collection(CollectionCommand::List) => Answer::Collections(decode(value)?),
        C::Collection(_) => Answer::Collections(vec![decode(value)?]),
        C::Personality(_) => Answer::Personality(decode(value)?),
        C::Vdisk(VdiskCommand::Remove { .. }) | C::Version(_) | C::Store(_) => {
            Answer::Message(decode(value)?)
        }
    })
}

fn json_of(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
