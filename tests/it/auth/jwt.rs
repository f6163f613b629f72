//! Forged and broken access tokens over REST and gRPC: each attack is a token that differs from
//! one the server accepts in exactly the attacked way, and is refused with 401 /
//! UNAUTHENTICATED and the one generic message.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore as _;
use serde_json::{Value, json};
use switchyard_proto::v1 as pb;
use tonic::Code;
use uuid::Uuid;

use super::{assert_error, call};
use crate::support::{Db, JWT_SECRET, Server, client_with};

/// Unix seconds.
fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Claims the test servers accept: the default issuer and audience, tenant `default`,
/// `jobs:read`, valid for ten minutes.
fn claims() -> Value {
    let now = now();
    json!({
        "iss": "switchyard",
        "aud": "switchyard",
        "sub": Uuid::new_v4().to_string(),
        "tenant": "default",
        "scopes": ["jobs:read"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": Uuid::new_v4().to_string(),
        "kind": "user",
    })
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// `claims` changed by `change`, signed with the servers' secret.
fn signed_with(change: impl FnOnce(&mut Value)) -> String {
    let mut c = claims();
    change(&mut c);
    hs256(&c, JWT_SECRET.as_bytes())
}

/// An unsigned token (`alg: none`) with valid claims.
fn alg_none() -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    format!("{header}.{payload}.")
}

/// `token` with its payload's scopes replaced by `["admin"]`, signature kept.
fn tampered(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["scopes"] = json!(["admin"]);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// Asserts `token` is refused on `GET /api/queue/jobs` without being echoed.
async fn assert_refused(s: &Server, token: &str, what: &str) {
    let r = call(client_with(token).get(s.url("/api/queue/jobs"))).await;
    assert_error(&r, 401, "unauthenticated", what);
    assert!(!r.body.to_string().contains(token), "{what}: token echoed");
}

async fn grpc_stats(s: &Server, token: &str) -> Result<(), tonic::Status> {
    let mut q = pb::queue_service_client::QueueServiceClient::new(s.grpc_with(token).await);
    q.get_stats(pb::GetStatsRequest {}).await.map(drop)
}

#[tokio::test]
async fn forged_and_broken_tokens_are_unauthenticated() {
    let s = Server::start(Db::Sqlite, &[]).await;
    // A token forged with the right secret and valid claims is accepted: the attacks below
    // differ from it in one way each.
    let good = signed_with(|_| {});
    let r = call(client_with(&good).get(s.url("/api/queue/jobs"))).await;
    assert_eq!(r.status, 200, "the baseline forgery: {}", r.body);
    grpc_stats(&s, &good).await.expect("the baseline over gRPC");

    let now = now();
    let attacks = [
        ("alg none", alg_none()),
        (
            "expired 120 s ago",
            signed_with(|c| {
                c["iat"] = json!(now - 1000);
                c["nbf"] = json!(now - 1000);
                c["exp"] = json!(now - 120);
            }),
        ),
        (
            "not valid for 120 s",
            signed_with(|c| c["nbf"] = json!(now + 120)),
        ),
        (
            "wrong issuer",
            signed_with(|c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "wrong audience",
            signed_with(|c| c["aud"] = json!("someone-else")),
        ),
        (
            "no tenant",
            signed_with(|c| {
                c.as_object_mut().unwrap().remove("tenant");
            }),
        ),
        ("tampered payload", tampered(&good)),
        ("tampered log-in token", tampered(&s.token)),
        (
            "another secret",
            hs256(&claims(), b"another-secret-of-at-least-32-bytes!!"),
        ),
    ];
    for (what, token) in &attacks {
        assert_refused(&s, token, what).await;
    }
    for (what, token) in attacks.iter().filter(|(what, _)| {
        [
            "alg none",
            "expired 120 s ago",
            "tampered payload",
            "another secret",
        ]
        .contains(what)
    }) {
        let err = grpc_stats(&s, token).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::Unauthenticated,
            "{what} over gRPC: {err:?}"
        );
    }
}

/// A PKCS#8 PEM of a fresh Ed25519 key, and the key.
fn ed25519_key() -> (String, ed25519_dalek::SigningKey) {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    (pem, key)
}

#[tokio::test]
async fn with_ed25519_only_eddsa_tokens_are_accepted() {
    let (pem, key) = ed25519_key();
    let dir = std::env::temp_dir().join(switchyard_testkit::unique("sy-it-ed-"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwt.pem");
    std::fs::write(&path, &pem).unwrap();
    // JWT_SECRET is set too (support sets it): the key file must win.
    let s = Server::start(
        Db::Sqlite,
        &[("SWITCHYARD_JWT_ED25519_KEY_FILE", path.to_str().unwrap())],
    )
    .await;
    let header = jsonwebtoken::decode_header(&s.token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA, "log-in issues EdDSA tokens");
    let r = call(s.client.get(s.url("/api/queue/jobs"))).await;
    assert_eq!(r.status, 200, "the log-in token works: {}", r.body);

    // A token signed with the key and valid claims is accepted...
    let der = key.to_pkcs8_der().unwrap();
    let eddsa = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims(),
        &EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();
    let r = call(client_with(&eddsa).get(s.url("/api/queue/jobs"))).await;
    assert_eq!(r.status, 200, "the baseline EdDSA forgery: {}", r.body);

    // ...and HS256 ones are not, whatever the HMAC secret: the public key (PEM or raw), or the
    // JWT_SECRET the server also has in its environment.
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let cases = [
        (
            "HS256 with the public key PEM",
            public_pem.as_bytes().to_vec(),
        ),
        (
            "HS256 with the raw public key",
            key.verifying_key().as_bytes().to_vec(),
        ),
        ("HS256 with JWT_SECRET", JWT_SECRET.as_bytes().to_vec()),
    ];
    for (what, secret) in cases {
        let token = hs256(&claims(), &secret);
        assert_refused(&s, &token, what).await;
        let err = grpc_stats(&s, &token).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::Unauthenticated,
            "{what} over gRPC: {err:?}"
        );
    }
}
