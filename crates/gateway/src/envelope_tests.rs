use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchyard_types::{Error, ErrorKind, FieldViolation};

use super::*;

async fn rendered(response: Response) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = finish(response, "rid-1");
    let (head, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        head.status,
        head.headers,
        serde_json::from_slice(&bytes).unwrap(),
    )
}

/// The REST half of DESIGN §3.2's table, written out independently of `status_of`.
fn expected_status(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InvalidArgument => 400,
        ErrorKind::Unauthenticated => 401,
        ErrorKind::PermissionDenied => 403,
        ErrorKind::NotFound => 404,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => 409,
        ErrorKind::TooLarge => 413,
        ErrorKind::RateLimited => 429,
        ErrorKind::Unavailable => 503,
        ErrorKind::Internal => 500,
    }
}

#[tokio::test]
async fn every_error_kind_renders_its_status_code_and_envelope() {
    for kind in ErrorKind::ALL {
        let (status, headers, body) =
            rendered(ApiError(Error::new(kind, "secret detail")).into_response()).await;
        assert_eq!(status.as_u16(), expected_status(kind), "{kind:?}");
        assert_eq!(body["success"], false, "{kind:?}");
        assert_eq!(body["errors"][0]["code"], kind.code(), "{kind:?}");
        assert!(body["errors"][0].get("field").is_none(), "{kind:?}");
        assert!(body.get("data").is_none(), "{kind:?}");
        assert_eq!(body["meta"], json!({"request_id": "rid-1"}), "{kind:?}");
        assert_eq!(headers["x-request-id"], "rid-1");
        assert_eq!(headers["content-type"], "application/json");
        let message = body["errors"][0]["message"].as_str().unwrap();
        if kind == ErrorKind::Internal {
            assert_eq!(message, "internal error");
        } else {
            assert_eq!(message, "secret detail");
        }
        assert_eq!(
            headers.contains_key("retry-after"),
            kind == ErrorKind::RateLimited,
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn retry_after_is_rounded_up_to_whole_seconds() {
    let mut e = Error::new(ErrorKind::RateLimited, "slow down");
    e.retry_after = Some(Duration::from_millis(2500));
    let (_, headers, _) = rendered(ApiError(e).into_response()).await;
    assert_eq!(headers["retry-after"], "3");
    let mut e = Error::unavailable("draining");
    e.retry_after = Some(Duration::from_secs(5));
    let (status, headers, _) = rendered(ApiError(e).into_response()).await;
    assert_eq!(
        (status.as_u16(), &headers["retry-after"]),
        (503, &"5".parse().unwrap())
    );
}

#[tokio::test]
async fn invalid_argument_lists_one_entry_per_violation() {
    let e = Error::invalid_fields(vec![
        FieldViolation {
            field: "pool".into(),
            description: "is empty".into(),
        },
        FieldViolation {
            field: "jobs[1].kind".into(),
            description: "is empty".into(),
        },
    ]);
    let (status, _, body) = rendered(ApiError(e).into_response()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"],
        json!([
            {"code": "invalid_argument", "message": "is empty", "field": "pool"},
            {"code": "invalid_argument", "message": "is empty", "field": "jobs[1].kind"},
        ])
    );
}

#[tokio::test]
async fn success_carries_data_and_the_page_token_only_when_there_is_one() {
    let (status, _, body) = rendered(Data::created(json!({"id": "j"})).into_response()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({"success": true, "data": {"id": "j"}, "meta": {"request_id": "rid-1"}})
    );
    let (_, _, body) = rendered(Data::page(vec![1, 2], Some("t".into())).into_response()).await;
    assert_eq!(body["data"], json!([1, 2]));
    assert_eq!(
        body["meta"],
        json!({"request_id": "rid-1", "next_page_token": "t"})
    );
    assert!(body.get("errors").is_none());
}

#[tokio::test]
async fn bare_error_statuses_become_envelopes_and_keep_their_headers() {
    let mut bare = (StatusCode::METHOD_NOT_ALLOWED, "plain text").into_response();
    bare.headers_mut()
        .insert("allow", "GET,POST".parse().unwrap());
    let (status, headers, body) = rendered(bare).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET,POST");
    assert_eq!(body["errors"][0]["code"], "method_not_allowed");
    let (status, _, body) =
        rendered((StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded").into_response()).await;
    assert_eq!(
        (status.as_u16(), body["errors"][0]["code"].as_str()),
        (413, Some("too_large"))
    );
    let (_, _, body) = rendered(StatusCode::SERVICE_UNAVAILABLE.into_response()).await;
    assert_eq!(body["errors"][0]["code"], "unavailable");
}

#[tokio::test]
async fn other_responses_pass_through_with_the_request_id() {
    let response = finish((StatusCode::OK, "<html></html>").into_response(), "rid-2");
    assert_eq!(response.headers()["x-request-id"], "rid-2");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"<html></html>");
}
