//! The policy table checked against the running server: every route and RPC the table guards
//! refuses a caller lacking its scope (403 / PERMISSION_DENIED) and admits one holding only that
//! scope; public ones need no credentials; and nothing the server serves is missing from it.

use prost::Message as _;
use serde_json::{Value, json};
use switchyard_auth::policy::{self, Access, GRPC_PACKAGE, RULES};
use switchyard_proto::v1 as pb;
use switchyard_types::Scope;
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

use super::{Reply, assert_error, call, channel, create_key, grpc_empty, session};
use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Db, Server, client_with};

/// The two API keys the matrix uses for one scope.
struct Keys {
    scope: Scope,
    /// Every scope but this one and `admin` (which grants everything).
    without: String,
    /// This scope alone.
    only: String,
}

/// The scopes the table requires, each with its two keys, created by the administrator.
async fn keys_per_scope(s: &Server) -> Vec<Keys> {
    let mut keys: Vec<Keys> = Vec::new();
    for rule in RULES {
        let Access::Scope(scope) = rule.access else {
            continue;
        };
        if keys.iter().any(|k| k.scope == scope) {
            continue;
        }
        let others: Vec<&str> = Scope::ALL
            .into_iter()
            .filter(|other| *other != scope && *other != Scope::Admin)
            .map(Scope::as_str)
            .collect();
        let slug = scope.as_str().replace(':', "-");
        let (without, _) = create_key(s, &s.client, &format!("without-{slug}"), &others).await;
        let (only, _) = create_key(s, &s.client, &format!("only-{slug}"), &[scope.as_str()]).await;
        keys.push(Keys {
            scope,
            without,
            only,
        });
    }
    keys
}

/// The access a caller without a client certificate needs: the server under test has no
/// client CA, so agents there connect with `jobs:write` tokens.
fn token_access(access: Access) -> Access {
    if access == Access::Agent {
        Access::Scope(Scope::JobsWrite)
    } else {
        access
    }
}

fn keys_for(keys: &[Keys], scope: Scope) -> &Keys {
    keys.iter().find(|k| k.scope == scope).unwrap()
}

/// Every REST route of the table: (method, path as in the table, access).
fn http_routes() -> impl Iterator<Item = (&'static str, &'static str, Access)> {
    RULES.iter().flat_map(|rule| {
        rule.http.iter().map(move |route| {
            let (method, path) = route.split_once(' ').expect("`METHOD /path`");
            (method, path, rule.access)
        })
    })
}

/// The request for a table route: `{id}` is a fresh UUID, `{name}` a valid name; paths outside
/// `/auth` and the root routes ([`policy::ROOT`]) are under `/api`; POST, PUT and PATCH carry `body`.
fn request(
    s: &Server,
    client: &reqwest::Client,
    method: &str,
    path: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    let path = path
        .replace("{id}", &Uuid::new_v4().to_string())
        .replace("{name}", "it-role");
    let url = if path.starts_with("/auth") || policy::ROOT.contains(&path.as_str()) {
        s.url(&path)
    } else {
        s.url(&format!("/api{path}"))
    };
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let with_body = matches!(method.as_str(), "POST" | "PUT" | "PATCH");
    let req = client.request(method, url);
    if with_body { req.json(body) } else { req }
}

#[tokio::test]
async fn every_rest_route_requires_exactly_its_scope() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let keys = keys_per_scope(&s).await;
    let garbage = client_with("garbage.not-a.token");
    let mut guarded = 0;
    for (method, path, access) in http_routes() {
        let route = format!("{method} {path}");
        match token_access(access) {
            Access::Scope(scope) => {
                guarded += 1;
                let k = keys_for(&keys, scope);
                let r = call(request(
                    &s,
                    &client_with(&k.without),
                    method,
                    path,
                    &json!({}),
                ))
                .await;
                assert_error(
                    &r,
                    403,
                    "permission_denied",
                    &format!("{route} without {scope}"),
                );
                let r = call(request(&s, &client_with(&k.only), method, path, &json!({}))).await;
                assert!(
                    !matches!(r.status, 401 | 403),
                    "{route} with only {scope}: {} {}",
                    r.status,
                    r.body
                );
                let r = call(request(&s, &garbage, method, path, &json!({}))).await;
                assert_error(
                    &r,
                    401,
                    "unauthenticated",
                    &format!("{route}, garbage bearer"),
                );
                let r = call(request(&s, &s.anon, method, path, &json!({}))).await;
                assert_error(
                    &r,
                    401,
                    "unauthenticated",
                    &format!("{route}, no credentials"),
                );
            }
            Access::Public => {
                // `/auth/validate` checks the credential in its body (or, absent, the bearer):
                // give it one, so a 401 can only come from the auth layer.
                let body = if path == "/auth/validate" {
                    json!({"token": s.token})
                } else {
                    json!({})
                };
                let r: Reply = call(request(&s, &s.anon, method, path, &body)).await;
                assert!(
                    !matches!(r.status, 401 | 403),
                    "public {route} without credentials: {} {}",
                    r.status,
                    r.body
                );
            }
            Access::Authenticated => {
                // Any credential passes the layer (the handler checks more, e.g. `/ws` the
                // scope of each topic); a bad one or none does not.
                guarded += 1;
                let any = &keys_for(&keys, Scope::JobsRead).only;
                let r = call(request(&s, &client_with(any), method, path, &json!({}))).await;
                assert!(
                    !matches!(r.status, 401 | 403),
                    "{route} with a valid key: {} {}",
                    r.status,
                    r.body
                );
                for (client, what) in [(&garbage, "garbage bearer"), (&s.anon, "no credentials")] {
                    let r = call(request(&s, client, method, path, &json!({}))).await;
                    assert_error(&r, 401, "unauthenticated", &format!("{route}, {what}"));
                }
            }
            Access::Agent => unreachable!("token_access maps agent routes to jobs:write"),
        }
    }
    assert!(guarded >= 20, "only {guarded} guarded routes checked");
}

/// Calls a public RPC of the table without credentials, with a request it should accept.
async fn call_public_rpc(s: &Server, ch: &Channel, rpc: &str) -> Result<(), Status> {
    let mut auth = pb::auth_service_client::AuthServiceClient::new(ch.clone());
    match rpc {
        "AuthService/Login" => auth
            .login(pb::LoginRequest {
                email: ADMIN_EMAIL.into(),
                password: ADMIN_PASSWORD.into(),
            })
            .await
            .map(drop),
        "AuthService/Refresh" => {
            let (_, refresh_token) = session(s, ADMIN_EMAIL, ADMIN_PASSWORD).await;
            auth.refresh(pb::RefreshRequest { refresh_token })
                .await
                .map(drop)
        }
        "AuthService/Validate" => auth
            .validate(pb::ValidateRequest {
                token: s.token.clone(),
            })
            .await
            .map(drop),
        "AuthService/Logout" => {
            let (_, refresh_token) = session(s, ADMIN_EMAIL, ADMIN_PASSWORD).await;
            auth.logout(pb::LogoutRequest { refresh_token })
                .await
                .map(drop)
        }
        "AgentService/Enroll" => {
            // A real token: the call passes the auth layer and reaches the service, which has
            // no CA key on this server.
            let created: Reply = call(
                s.client
                    .post(s.url("/api/agents/registration-tokens"))
                    .json(&serde_json::json!({"pool": "build"})),
            )
            .await;
            let token = created.body["data"]["token"].as_str().unwrap().to_owned();
            let key = switchyard_pki::AgentKey::generate().unwrap();
            let mut agents = pb::agent_service_client::AgentServiceClient::new(ch.clone());
            let refused = agents
                .enroll(pb::EnrollRequest {
                    token,
                    name: "matrix".into(),
                    labels: Default::default(),
                    csr: key.csr_der().unwrap(),
                })
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
            Ok(())
        }
        "/grpc.health.v1.Health/" => grpc_empty(ch, None, "/grpc.health.v1.Health/Check").await,
        prefix if prefix.starts_with("/grpc.reflection.") => {
            reflect(ch, &format!("{prefix}ServerReflectionInfo")).await
        }
        other => panic!("public RPC {other} has no check here: add one"),
    }
}

/// One `ListServices` round trip on the reflection service at `path` (v1 and v1alpha share
/// the message layout).
async fn reflect(ch: &Channel, path: &str) -> Result<(), Status> {
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("channel not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<
        tonic_reflection::pb::v1::ServerReflectionRequest,
        tonic_reflection::pb::v1::ServerReflectionResponse,
    >::default();
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path.to_owned()).unwrap();
    let mut stream = grpc
        .streaming(
            tonic::Request::new(futures::stream::iter([request])),
            path,
            codec,
        )
        .await?
        .into_inner();
    stream.message().await?.expect("a reflection answer");
    Ok(())
}

#[tokio::test]
async fn every_rpc_requires_exactly_its_scope() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let keys = keys_per_scope(&s).await;
    let ch = channel(&s).await;
    let mut guarded = 0;
    for rule in RULES {
        for rpc in rule.rpc {
            match token_access(rule.access) {
                Access::Agent => unreachable!("token_access maps it to its scope"),
                Access::Scope(scope) => {
                    guarded += 1;
                    let path = format!("/{GRPC_PACKAGE}.{rpc}");
                    let k = keys_for(&keys, scope);
                    let code = |r: Result<(), Status>| r.err().map(|e| (e.code(), e));
                    let got = code(grpc_empty(&ch, Some(&k.without), &path).await);
                    assert_eq!(
                        got.as_ref().map(|(c, _)| *c),
                        Some(Code::PermissionDenied),
                        "{rpc} without {scope}: {got:?}"
                    );
                    let got = code(grpc_empty(&ch, Some(&k.only), &path).await);
                    assert!(
                        !matches!(
                            got.as_ref().map(|(c, _)| *c),
                            Some(Code::Unauthenticated | Code::PermissionDenied)
                        ),
                        "{rpc} with only {scope}: {got:?}"
                    );
                    for (what, bearer) in [("garbage bearer", Some("garbage")), ("none", None)] {
                        let got = code(grpc_empty(&ch, bearer, &path).await);
                        assert_eq!(
                            got.as_ref().map(|(c, _)| *c),
                            Some(Code::Unauthenticated),
                            "{rpc}, credentials {what}: {got:?}"
                        );
                    }
                }
                Access::Public => {
                    if let Err(e) = call_public_rpc(&s, &ch, rpc).await {
                        panic!("public {rpc} without credentials: {e:?}");
                    }
                }
                Access::Authenticated => {
                    panic!("{rpc}: the table lists only public or scoped RPCs")
                }
            }
        }
    }
    assert!(guarded >= 20, "only {guarded} guarded RPCs checked");
}

#[tokio::test]
async fn every_declared_rpc_and_served_operation_is_in_the_table() {
    let set = prost_types::FileDescriptorSet::decode(switchyard_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut methods = 0;
    for file in set.file.iter().filter(|f| f.package() == GRPC_PACKAGE) {
        for service in &file.service {
            for method in &service.method {
                methods += 1;
                let path = format!("/{GRPC_PACKAGE}.{}/{}", service.name(), method.name());
                assert_ne!(
                    policy::for_rpc(&path),
                    Access::Authenticated,
                    "{path} is declared in the proto but missing from the policy table"
                );
            }
        }
    }
    assert!(methods >= 20, "only {methods} methods in {GRPC_PACKAGE}");

    let s = Server::start(Db::Sqlite, &[]).await;
    let r = call(s.anon.get(s.url("/api/openapi.json"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let paths = r.body["paths"].as_object().expect("paths in the document");
    let mut operations = 0;
    for (path, item) in paths {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let method = method.to_ascii_uppercase();
            // The document's paths are as served (`/api/...`, `/auth/...`, `/health`); the
            // look-up strips the mount itself and matches `{param}` segments as parameters.
            assert_ne!(
                policy::for_http(&method, path),
                Access::Authenticated,
                "{method} {path} is served but missing from the policy table"
            );
            // And under the other mount too.
            if let Some(rest) = path.strip_prefix("/api/") {
                assert_ne!(
                    policy::for_http(&method, &format!("/api/v1/{rest}")),
                    Access::Authenticated,
                    "{method} /api/v1/{rest}"
                );
            }
        }
    }
    assert!(operations >= 20, "only {operations} operations documented");
}
