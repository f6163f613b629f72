//! Browser safety: CORS only for configured origins, a strict CSP and no framing on HTML,
//! no caching of `/auth` answers, and `nosniff` everywhere.

use reqwest::Method;
use serde_json::json;

use super::{Reply, call};
use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Db, Server, client_with};

const ALLOWED: &str = "https://ci.example.com";

async fn preflight(s: &Server, origin: &str) -> Reply {
    call(
        s.anon
            .request(Method::OPTIONS, s.url("/api/queue/jobs"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            ),
    )
    .await
}

#[tokio::test]
async fn cors_admits_only_the_configured_origins() {
    let s = Server::start(Db::Sqlite, &[("SWITCHYARD_CORS_ORIGINS", ALLOWED)]).await;
    let r = preflight(&s, ALLOWED).await;
    assert!(r.status < 300, "preflight: {} {}", r.status, r.body);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(ALLOWED),
        "{:?}",
        r.headers
    );
    let methods = r.header("access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{:?}", r.headers);
    let headers = r
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{:?}", r.headers);
    // Credentials travel in a header, never cookies.
    assert_eq!(r.header("access-control-allow-credentials"), None);

    for evil in [
        "https://evil.example",
        "https://ci.example.com.evil.example",
        "null",
    ] {
        let r = preflight(&s, evil).await;
        assert_eq!(
            r.header("access-control-allow-origin"),
            None,
            "preflight from {evil}: {:?}",
            r.headers
        );
    }

    // The actual request carries the header for the allowed origin only.
    let r = call(
        s.client
            .get(s.url("/api/queue/jobs"))
            .header("origin", ALLOWED),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), Some(ALLOWED));
    let r = call(
        s.client
            .get(s.url("/api/queue/jobs"))
            .header("origin", "https://evil.example"),
    )
    .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        None,
        "{:?}",
        r.headers
    );
}

#[tokio::test]
async fn security_headers_guard_html_auth_and_every_response() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let docs = call(s.anon.get(s.url("/api/docs"))).await;
    assert_eq!(docs.status, 200, "{}", docs.body);
    let csp = docs
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("no CSP on the docs page: {:?}", docs.headers));
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"))
        .unwrap_or_else(|| panic!("no script-src in {csp}"));
    assert!(!script_src.contains("unsafe-inline"), "{csp}");
    assert!(!script_src.contains("unsafe-eval"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(docs.header("x-frame-options"), Some("DENY"));

    // Log-in answers, accepted or refused, must not be cached.
    let ok = call(
        s.anon
            .post(s.url("/auth/session"))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let refused = call(
        s.anon
            .post(s.url("/auth/session"))
            .json(&json!({"email": ADMIN_EMAIL, "password": "wrong-password"})),
    )
    .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    for r in [&ok, &refused] {
        assert_eq!(
            r.header("cache-control"),
            Some("no-store"),
            "{:?}",
            r.headers
        );
    }

    let others = [
        call(s.anon.get(s.url("/health"))).await,
        call(s.anon.get(s.url("/api/openapi.json"))).await,
        call(s.client.get(s.url("/api/queue/jobs"))).await,
        call(s.anon.get(s.url("/api/queue/jobs"))).await,
        call(client_with("garbage").get(s.url("/api/queue/jobs"))).await,
        call(s.client.get(s.url("/api/nope"))).await,
        call(s.client.put(s.url("/api/queue/stats"))).await,
        call(
            s.client
                .post(s.url("/api/queue/jobs"))
                .header("content-type", "application/json")
                .body("{"),
        )
        .await,
    ];
    for r in [&docs, &ok, &refused].into_iter().chain(&others) {
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{} {:?}: {}",
            r.status,
            r.headers,
            r.body
        );
    }
    // JSON is never served as HTML, so it gets no CSP of its own to get wrong.
    assert!(
        others[1]
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        others[1].headers
    );
}
