use axum::body::Body;
use axum::http::Request;
use serde::Deserialize;
use switchyard_types::{ErrorKind, JobState, Priority};

use super::*;
use crate::dto::{ClaimBody, EnqueueRequest, ListJobsQuery};

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Probe {
    pool: String,
    priority: Option<Priority>,
    max_jobs: Option<u32>,
}

async fn json<T: DeserializeOwned>(content_type: Option<&str>, body: &str) -> Result<T, ApiError> {
    let mut request = Request::builder().method("POST").uri("/");
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let request = request.body(Body::from(body.to_owned())).unwrap();
    ApiJson::<T>::from_request(request, &())
        .await
        .map(|ApiJson(v)| v)
}

/// (field, message) of a single-violation error, or (None, message).
fn field(err: &ApiError) -> (Option<&str>, &str) {
    assert_eq!(err.0.kind, ErrorKind::InvalidArgument, "{err:?}");
    match err.0.violations.as_slice() {
        [] => (None, err.0.message.as_str()),
        [one] => (Some(one.field.as_str()), one.description.as_str()),
        more => panic!("expected one violation, got {more:?}"),
    }
}

#[tokio::test]
async fn good_json_is_accepted_with_case_insensitive_enums() {
    let probe: Probe = json(
        Some("application/json; charset=utf-8"),
        r#"{"pool":"b","priority":"high"}"#,
    )
    .await
    .unwrap();
    assert_eq!(
        probe,
        Probe {
            pool: "b".into(),
            priority: Some(Priority::High),
            max_jobs: None
        }
    );
    assert!(
        json::<Probe>(Some("application/vnd.switchyard+json"), r#"{"pool":"b"}"#)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn bad_json_names_the_field_when_serde_knows_it() {
    let cases = [
        (r#"{"pool":"b","priority":"URGENT"}"#, Some("priority")),
        (r#"{"pool":7}"#, Some("pool")),
        (r#"{"pool":"b","max_jobs":-1}"#, Some("max_jobs")),
        (r#"{"pool":"b","max_jobs":99999999999}"#, Some("max_jobs")),
        (r#"{}"#, Some("pool")),
        (r#"{"pool":"b","nope":1}"#, Some("nope")),
        (r#"{"pool":"b""#, None),
        (r#"{"pool":"b"} trailing"#, None),
        ("", None),
        ("null", None),
    ];
    for (body, expected) in cases {
        let err = json::<Probe>(Some("application/json"), body)
            .await
            .unwrap_err();
        let (got, message) = field(&err);
        assert_eq!(got, expected, "{body}: {message}");
        if got.is_some() {
            assert!(
                !message.contains(" at line "),
                "position left in a field error: {message}"
            );
        } else {
            assert!(
                message.starts_with("malformed JSON") || message.starts_with("invalid type"),
                "{message}"
            );
        }
    }
}

#[tokio::test]
async fn enum_errors_do_not_repeat_the_field_name() {
    let err = json::<Probe>(
        Some("application/json"),
        r#"{"pool":"b","priority":"URGENT"}"#,
    )
    .await
    .unwrap_err();
    let (field, message) = field(&err);
    assert_eq!(field, Some("priority"));
    assert!(message.starts_with("unknown value \"URGENT\""), "{message}");
}

#[tokio::test]
async fn non_json_content_types_are_invalid_arguments() {
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let err = json::<Probe>(ct, r#"{"pool":"b"}"#).await.unwrap_err();
        assert!(field(&err).1.contains("application/json"), "{ct:?}");
    }
}

#[tokio::test]
async fn batch_errors_carry_the_index() {
    let body = serde_json::json!({"jobs": [{"pool": "a", "kind": "k"}, {"pool": "a", "kind": "k", "priority": "URGENT"}]});
    let err = EnqueueRequest::from_json(body).unwrap_err();
    assert_eq!(field(&err).0, Some("jobs[1].priority"));
    let err = EnqueueRequest::from_json(serde_json::json!({"jobs": [{"kind": "k"}]})).unwrap_err();
    assert_eq!(field(&err).0, Some("jobs[0].pool"));
    let (jobs, batch) = EnqueueRequest::from_json(serde_json::json!({"pool": "a", "kind": "k"}))
        .unwrap()
        .into_jobs();
    assert_eq!((jobs.len(), batch), (1, false));
}

#[tokio::test]
async fn claim_bodies_reject_negative_numbers() {
    let err = json::<ClaimBody>(
        Some("application/json"),
        r#"{"agent_id":"a","pool":"p","max_jobs":-1}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(field(&err).0, Some("max_jobs"));
}

async fn query(q: &str) -> Result<ListJobsQuery, ApiError> {
    let (mut parts, ()) = Request::builder()
        .uri(format!("/x?{q}"))
        .body(())
        .unwrap()
        .into_parts();
    ApiQuery::<ListJobsQuery>::from_request_parts(&mut parts, &())
        .await
        .map(|ApiQuery(v)| v)
}

#[tokio::test]
async fn queries_parse_enums_case_insensitively_and_name_bad_parameters() {
    let q = query("state=queued&priority=High&limit=10&label=os:linux")
        .await
        .unwrap();
    assert_eq!(
        (q.state, q.priority, q.limit),
        (Some(JobState::Queued), Some(Priority::High), Some(10))
    );
    let list = q.into_list().unwrap();
    assert_eq!(list.label, Some(("os".into(), "linux".into())));
    let list = query("label=os%3Dlinux")
        .await
        .unwrap()
        .into_list()
        .unwrap();
    assert_eq!(list.label, Some(("os".into(), "linux".into())));
    assert!(
        query("")
            .await
            .unwrap()
            .into_list()
            .unwrap()
            .limit
            .is_none()
    );
    for (q, expected) in [
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("state=DONE", "state"),
        ("priority=urgent", "priority"),
        ("colour=red", "colour"),
    ] {
        let err = query(q).await.unwrap_err();
        assert_eq!(field(&err).0, Some(expected), "{q}");
    }
    let err = query("label=nolabel")
        .await
        .unwrap()
        .into_list()
        .unwrap_err();
    assert_eq!(field(&err).0, Some("label"));
}

#[tokio::test]
async fn job_ids_in_paths_are_checked() {
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;
    let app = Router::new().route(
        "/jobs/{id}",
        get(|JobIdParam(id): JobIdParam| async move { id.to_string() }),
    );
    let id = switchyard_types::JobId::new();
    let ok = app
        .clone()
        .oneshot(
            Request::get(format!("/jobs/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ok.status(), axum::http::StatusCode::OK);
    let bad = app
        .oneshot(
            Request::get("/jobs/not-a-uuid")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(bad.status(), axum::http::StatusCode::BAD_REQUEST);
    let reply = bad.extensions().get::<crate::envelope::Reply>().unwrap();
    assert_eq!(reply.errors[0].field.as_deref(), Some("id"));
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Optional {
    #[serde(default)]
    execute: bool,
}

async fn json_or_default(content_type: Option<&str>, body: &str) -> Result<Optional, ApiError> {
    let mut request = Request::builder().method("POST").uri("/");
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let request = request.body(Body::from(body.to_owned())).unwrap();
    ApiJsonOrDefault::<Optional>::from_request(request, &())
        .await
        .map(|ApiJsonOrDefault(v)| v)
}

#[tokio::test]
async fn optional_bodies_default_when_empty_and_are_checked_otherwise() {
    for ct in [None, Some("application/json"), Some("text/plain")] {
        assert_eq!(
            json_or_default(ct, "").await.unwrap(),
            Optional::default(),
            "{ct:?}"
        );
    }
    let on = json_or_default(Some("application/json"), r#"{"execute":true}"#)
        .await
        .unwrap();
    assert_eq!(on, Optional { execute: true });
    let err = json_or_default(Some("application/json"), r#"{"exec":true}"#)
        .await
        .unwrap_err();
    assert_eq!(field(&err).0, Some("exec"));
    let err = json_or_default(Some("application/json"), r#"{"execute":"#)
        .await
        .unwrap_err();
    assert!(field(&err).1.starts_with("malformed JSON"));
    let err = json_or_default(Some("text/plain"), r#"{"execute":true}"#)
        .await
        .unwrap_err();
    assert!(field(&err).1.contains("application/json"));
}
