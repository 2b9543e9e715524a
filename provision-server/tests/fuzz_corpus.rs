//! Replays the seed corpora of the fuzz targets `config`, `api_request` and `http_range` (in
//! `fuzz/corpus/`) through the functions the targets call, so stable CI runs them.

use testkit::replay_corpus as replay;

#[test]
fn config_corpus() {
    replay("config", provision_server::fuzzing::config);
}

#[test]
fn http_range_corpus() {
    replay("http_range", provision_server::fuzzing::http_range);
}

#[test]
fn api_request_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let api = provision_server::fuzzing::ApiRequests::new(dir.path()).unwrap();
    replay("api_request", |data| api.request(data));
}

/// A method a route does not take answers 405 with the API's JSON error and the
/// route's `Allow` header (axum's own 405 had an empty body; found by `api_request`).
#[test]
fn a_wrong_method_answers_a_json_error() {
    use axum::http::{Request, StatusCode, header};
    let dir = tempfile::tempdir().unwrap();
    let api = provision_server::fuzzing::ApiRequests::new(dir.path()).unwrap();
    let request = Request::delete("/v1/status")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", provision_server::fuzzing::ADMIN_TOKEN),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, headers, body) = api.send(request);
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "GET,HEAD");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["kind"], "not_found");
    assert!(body["error"].as_str().unwrap().contains("DELETE"), "{body}");
}
