//! Agents over mutual TLS: a registration token buys a certificate once; the certificate, not
//! the `Hello`, says who the agent is; certificates from another CA, expired ones and those of
//! deregistered agents are refused; plaintext and token-only agents are refused where the
//! server verifies client certificates; a certificate renews over the stream; and a real
//! `switchyard agent`, enrolled with `switchyard agent enroll`, runs a shell job over mTLS.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_pki::{AgentKey, Authority};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::agent_service_client::AgentServiceClient;
use switchyard_types::{SpiffeId, TenantId};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status, Streaming};

use crate::agents::{enqueue_shell, state_is, wait_for, workdir};
use crate::support::{Db, Server, binary, send};

/// A CA, a server certificate for `localhost` signed by it, and their files.
struct Pki {
    ca: Authority,
    dir: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(switchyard_testkit::unique("sy-it-pki-"));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Authority::generate("it CA").unwrap();
        let (cert, key) = ca
            .issue_server(&["localhost", "127.0.0.1"], Duration::from_secs(3600))
            .unwrap();
        std::fs::write(dir.join("server.pem"), cert).unwrap();
        std::fs::write(dir.join("server.key"), key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
        Pki { ca, dir }
    }

    /// The CA key, PEM: the test makes its own and hands it to the server.
    fn write_ca_key(&self, key_pem: &str) {
        std::fs::write(self.dir.join("ca.key"), key_pem).unwrap();
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// `switchyard serve` verifying client certificates against `pki`'s CA and enrolling with its
/// key, short stream timings, no plaintext, no agent tokens.
async fn start(pki: &Pki) -> Server {
    let vars = [
        ("SWITCHYARD_TLS_CERT", pki.path("server.pem")),
        ("SWITCHYARD_TLS_KEY", pki.path("server.key")),
        ("SWITCHYARD_TLS_CLIENT_CA", pki.path("ca.pem")),
        ("SWITCHYARD_CA_KEY", pki.path("ca.key")),
        ("SWITCHYARD_AGENT_HEARTBEAT_SECONDS", "1".to_owned()),
        ("SWITCHYARD_AGENT_LEASE_SECONDS", "5".to_owned()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(Db::Sqlite, &vars).await
}

/// A CA with its key on disk, as an operator provides it.
fn pki_with_key() -> Pki {
    let dir = std::env::temp_dir().join(switchyard_testkit::unique("sy-it-ca-"));
    let ca = Authority::load_or_create(&dir).unwrap();
    let pki = Pki::new();
    // Replace the fresh CA by the one whose key is on disk, and re-sign the server.
    let (cert, key) = ca
        .issue_server(&["localhost", "127.0.0.1"], Duration::from_secs(3600))
        .unwrap();
    std::fs::write(pki.dir.join("server.pem"), cert).unwrap();
    std::fs::write(pki.dir.join("server.key"), key).unwrap();
    std::fs::write(pki.dir.join("ca.pem"), ca.cert_pem()).unwrap();
    pki.write_ca_key(&std::fs::read_to_string(dir.join("ca.key")).unwrap());
    Pki { ca, dir: pki.dir }
}

/// A TLS channel to `s` trusting `pki`'s CA, presenting `client` (certificate, key) if given.
/// A refused client certificate may surface here or on the first call.
async fn tls(s: &Server, pki: &Pki, client: Option<(&str, &str)>) -> Result<Channel, String> {
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.ca.cert_pem()))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        config = config.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://localhost:{}", s.grpc.port()))
        .unwrap()
        .tls_config(config)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// A registration token for `pool` valid `ttl_seconds`, created over REST by the administrator.
async fn token(s: &Server, pool: &str, ttl_seconds: u32) -> (String, String) {
    let (status, body, _) = send(
        s.client
            .post(s.url("/api/agents/registration-tokens"))
            .json(&json!({"pool": pool, "ttl_seconds": ttl_seconds})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    let id = body["data"]["registration_token"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (token, id)
}

/// Enrolls agent `name` with `token` over `ch`: the response and the agent's key.
async fn enroll(
    ch: &Channel,
    token: &str,
    name: &str,
) -> Result<(pb::EnrollResponse, AgentKey), Status> {
    let key = AgentKey::generate().unwrap();
    let response = AgentServiceClient::new(ch.clone())
        .enroll(pb::EnrollRequest {
            token: token.to_owned(),
            name: name.to_owned(),
            labels: Default::default(),
            csr: key.csr_der().unwrap(),
        })
        .await?
        .into_inner();
    Ok((response, key))
}

/// An open `Connect` stream: the sender of agent messages and the server's answers.
#[derive(Debug)]
struct Stream {
    tx: mpsc::Sender<pb::ConnectRequest>,
    rx: Streaming<pb::ConnectResponse>,
}

fn message(body: pb::connect_request::Body) -> pb::ConnectRequest {
    pb::ConnectRequest { body: Some(body) }
}

/// Opens `Connect` over `ch` with a `Hello` naming `pool`; the stream and its first answer.
async fn hello(ch: &Channel, pool: &str) -> Result<(Stream, pb::connect_response::Body), Status> {
    hello_as(ch, pool, None).await
}

/// [`hello`], sending `bearer` as the credential.
async fn hello_as(
    ch: &Channel,
    pool: &str,
    bearer: Option<&str>,
) -> Result<(Stream, pb::connect_response::Body), Status> {
    let (tx, outbound) = mpsc::channel(16);
    tx.send(message(pb::connect_request::Body::Hello(pb::Hello {
        name: "claimed-name".into(),
        pool: pool.into(),
        capacity: 1,
        ..Default::default()
    })))
    .await
    .unwrap();
    let authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
        bearer.map(|t| format!("Bearer {t}").parse().unwrap());
    let mut client =
        AgentServiceClient::with_interceptor(ch.clone(), move |mut request: tonic::Request<()>| {
            if let Some(value) = &authorization {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            Ok(request)
        });
    let mut rx = client
        .connect(ReceiverStream::new(outbound))
        .await?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), rx.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no answer to Hello"))??
        .and_then(|m| m.body)
        .ok_or_else(|| Status::unknown("the stream ended"))?;
    Ok((Stream { tx, rx }, first))
}

/// Asserts that a client presenting `cert` is refused by TLS itself (at the handshake or when
/// the server's alert arrives on the first call), before any gRPC service sees it.
async fn refused_by_tls(s: &Server, pki: &Pki, cert: &str, key: &AgentKey, what: &str) {
    let ch = match tls(s, pki, Some((cert, &key.to_pem()))).await {
        Err(_) => return,
        Ok(ch) => ch,
    };
    match hello(&ch, "build").await {
        // A status the server sent carries no source; a broken connection does.
        Err(status) => assert!(
            std::error::Error::source(&status).is_some(),
            "{what}: refused by the service, not by TLS: {status:?}"
        ),
        Ok((_, first)) => panic!("{what}: served: {first:?}"),
    }
}

fn welcome(first: pb::connect_response::Body) -> pb::Welcome {
    let pb::connect_response::Body::Welcome(w) = first else {
        panic!("expected Welcome, got {first:?}");
    };
    w
}

#[tokio::test]
async fn an_enrolled_agent_is_who_its_certificate_says() {
    let pki = pki_with_key();
    let s = start(&pki).await;
    let ch = tls(&s, &pki, None).await.unwrap();
    let (token, _) = token(&s, "build", 600).await;
    let (enrolled, key) = enroll(&ch, &token, "builder-1").await.unwrap();
    let agent = enrolled.agent.unwrap();
    let cert = enrolled.certificate.unwrap();
    assert_eq!(
        (agent.name.as_str(), agent.pool.as_str()),
        ("builder-1", "build")
    );
    assert_eq!(agent.status, pb::AgentStatus::Offline as i32);
    let identity: SpiffeId = cert.spiffe_id.parse().unwrap();
    assert_eq!(
        identity,
        SpiffeId {
            tenant: TenantId::default_tenant(),
            pool: "build".into(),
            agent: agent.id.parse().unwrap(),
        }
    );
    assert_eq!(cert.ca_pem, pki.ca.cert_pem());
    assert_eq!(
        switchyard_pki::agent_identity_pem(&cert.certificate_pem).unwrap(),
        identity
    );

    // The certificate names the agent; the name in Hello does not matter.
    let mtls = tls(&s, &pki, Some((&cert.certificate_pem, &key.to_pem())))
        .await
        .unwrap();
    let (_stream, first) = hello(&mtls, "build").await.unwrap();
    assert_eq!(welcome(first).agent_id, agent.id);
    let (_, listed, _) = send(s.client.get(s.url(&format!("/api/agents/{}", agent.id)))).await;
    assert_eq!(listed["data"]["name"], "builder-1", "{listed}");
    assert_eq!(listed["data"]["status"], "HEALTHY", "{listed}");

    // Another pool than the certificate's is refused.
    let other = hello(&mtls, "deploy").await.unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied, "{other:?}");

    // Without a certificate, this server refuses agents, bearer token or not.
    let anonymous = hello(&ch, "build").await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    assert!(
        anonymous.message().contains("client certificate"),
        "{anonymous:?}"
    );
    let with_token = hello_as(&ch, "build", Some(&s.token)).await.unwrap_err();
    assert_eq!(with_token.code(), Code::Unauthenticated, "{with_token:?}");

    // And it serves no plaintext.
    let plain = Channel::from_shared(format!("http://{}", s.grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    let plain_failed = match plain {
        Err(_) => true,
        Ok(ch) => hello(&ch, "build").await.is_err(),
    };
    assert!(plain_failed, "plaintext was served");
}

#[tokio::test]
async fn a_registration_token_works_once_and_not_once_expired_or_revoked() {
    let pki = pki_with_key();
    let s = start(&pki).await;
    let ch = tls(&s, &pki, None).await.unwrap();

    let (once, once_id) = token(&s, "build", 600).await;
    let (_, _) = enroll(&ch, &once, "a1").await.unwrap();
    let again = enroll(&ch, &once, "a2").await.unwrap_err();
    assert_eq!(again.code(), Code::Unauthenticated, "{again:?}");
    assert!(again.message().contains("already used"), "{again:?}");

    let (short, _) = token(&s, "build", 1).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = enroll(&ch, &short, "a3").await.unwrap_err();
    assert_eq!(expired.code(), Code::Unauthenticated, "{expired:?}");
    assert!(expired.message().contains("expired"), "{expired:?}");

    let (revoked, revoked_id) = token(&s, "build", 600).await;
    let (status, body, _) = send(
        s.client
            .delete(s.url(&format!("/api/agents/registration-tokens/{revoked_id}"))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let refused = enroll(&ch, &revoked, "a4").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("revoked"), "{refused:?}");

    // A name that is taken leaves the token unused.
    let (fresh, _) = token(&s, "build", 600).await;
    let taken = enroll(&ch, &fresh, "a1").await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    enroll(&ch, &fresh, "a5").await.unwrap();

    // A forged token (right id, wrong secret) is not valid.
    let forged = format!("{}{}", &once[..once.len() - 4], "AAAA");
    let bad = enroll(&ch, &forged, "a6").await.unwrap_err();
    assert_eq!(bad.code(), Code::Unauthenticated, "{bad:?}");

    // The list is an audit trail without secrets.
    let (status, list, _) = send(s.client.get(s.url("/api/agents/registration-tokens"))).await;
    assert_eq!(status, 200, "{list}");
    let text = list.to_string();
    for secret in [&once, &short, &revoked, &fresh] {
        assert!(
            !text.contains(secret.as_str()),
            "a token leaked into the list"
        );
    }
    let used = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == once_id.as_str())
        .unwrap();
    assert!(
        used["used_at"].is_string() && used["agent_id"].is_string(),
        "{used}"
    );
}

#[tokio::test]
async fn foreign_expired_and_revoked_certificates_are_refused() {
    let pki = pki_with_key();
    let s = start(&pki).await;
    let ch = tls(&s, &pki, None).await.unwrap();
    let (token, _) = token(&s, "build", 600).await;
    let (enrolled, key) = enroll(&ch, &token, "victim").await.unwrap();
    let agent_id = enrolled.agent.unwrap().id;
    let identity: SpiffeId = enrolled
        .certificate
        .as_ref()
        .unwrap()
        .spiffe_id
        .parse()
        .unwrap();

    // Another CA names the same agent: refused at the handshake.
    let rogue = Authority::generate("rogue CA").unwrap();
    let forged = rogue
        .issue_agent(
            &key.csr_der().unwrap(),
            &identity,
            Duration::from_secs(3600),
        )
        .unwrap();
    refused_by_tls(&s, &pki, &forged.cert_pem, &key, "another CA").await;

    // The right CA, but expired.
    let short = pki
        .ca
        .issue_agent(&key.csr_der().unwrap(), &identity, Duration::from_secs(1))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    refused_by_tls(&s, &pki, &short.cert_pem, &key, "expired").await;

    // The real certificate works until the agent is deregistered; then its live stream ends at
    // its next heartbeat and it cannot connect again.
    let cert = enrolled.certificate.unwrap().certificate_pem;
    let mtls = tls(&s, &pki, Some((&cert, &key.to_pem()))).await.unwrap();
    let (mut live, first) = hello(&mtls, "build").await.unwrap();
    welcome(first);
    let (status, body, _) = send(
        s.client
            .post(s.url(&format!("/api/agents/{agent_id}/deregister"))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "TERMINATED", "{body}");
    live.tx
        .send(message(pb::connect_request::Body::Heartbeat(
            pb::Heartbeat {},
        )))
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match live.rx.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the deregistered agent's stream stays open");
    let ended = ended.expect("the stream ends with an error");
    assert_eq!(ended.code(), Code::FailedPrecondition, "{ended:?}");
    let again = hello(&mtls, "build").await.unwrap_err();
    assert_eq!(again.code(), Code::PermissionDenied, "{again:?}");
    assert!(again.message().contains("deregistered"), "{again:?}");
}

#[tokio::test]
async fn a_certificate_renews_over_the_stream() {
    let pki = pki_with_key();
    let s = start(&pki).await;
    let ch = tls(&s, &pki, None).await.unwrap();
    let (token, _) = token(&s, "build", 600).await;
    let (enrolled, key) = enroll(&ch, &token, "renewer").await.unwrap();
    let old = enrolled.certificate.unwrap();
    let mtls = tls(&s, &pki, Some((&old.certificate_pem, &key.to_pem())))
        .await
        .unwrap();
    let (mut stream, first) = hello(&mtls, "build").await.unwrap();
    welcome(first);
    let new_key = AgentKey::generate().unwrap();
    stream
        .tx
        .send(message(pb::connect_request::Body::Renew(
            pb::RenewCertificate {
                csr: new_key.csr_der().unwrap(),
            },
        )))
        .await
        .unwrap();
    let renewed = loop {
        let next = tokio::time::timeout(Duration::from_secs(5), stream.rx.message())
            .await
            .expect("an answer to RenewCertificate")
            .unwrap()
            .and_then(|m| m.body);
        if let Some(pb::connect_response::Body::Certificate(c)) = next {
            break c;
        }
    };
    assert_eq!(renewed.spiffe_id, old.spiffe_id);
    assert_ne!(renewed.certificate_pem, old.certificate_pem);
    // The new certificate, with the new key, connects as the same agent.
    let fresh = tls(
        &s,
        &pki,
        Some((&renewed.certificate_pem, &new_key.to_pem())),
    )
    .await
    .unwrap();
    drop(stream);
    let (_, first) = hello(&fresh, "build").await.unwrap();
    let expected: Value = enrolled.agent.unwrap().id.into();
    assert_eq!(Value::from(welcome(first).agent_id), expected);
}

#[tokio::test]
async fn a_real_agent_enrolls_and_runs_a_shell_job_over_mtls() {
    let pki = pki_with_key();
    let s = start(&pki).await;
    let (token, _) = token(&s, "build", 600).await;
    let server = format!("https://localhost:{}", s.grpc.port());
    let dir = workdir();
    let certs = dir.join("certs");
    let enrolled = binary()
        .args(["agent", "enroll", "--server", &server, "--name", "real-1"])
        .args(["--ca-file", &pki.path("ca.pem")])
        .arg("--cert-dir")
        .arg(&certs)
        .env("SWITCHYARD_REGISTRATION_TOKEN", &token)
        .output()
        .expect("run switchyard agent enroll");
    let said = String::from_utf8_lossy(&enrolled.stdout);
    assert!(
        enrolled.status.success() && said.contains("in pool build"),
        "enroll: {said} {}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    // The same token again: refused with the server's reason, and nothing overwritten.
    let again = binary()
        .args([
            "agent", "enroll", "--server", &server, "--name", "real-2", "--force",
        ])
        .args(["--ca-file", &pki.path("ca.pem")])
        .arg("--cert-dir")
        .arg(dir.join("other"))
        .env("SWITCHYARD_REGISTRATION_TOKEN", &token)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already used"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let mut agent = binary()
        .args(["agent", "--server", &server])
        .arg("--cert-dir")
        .arg(&certs)
        .env("SWITCHYARD_WORKDIR", &dir)
        .env("SWITCHYARD_SHUTDOWN_GRACE_SECONDS", "2")
        .spawn()
        .expect("spawn switchyard agent");
    let id = enqueue_shell(&s, json!({"command": "echo hello over mtls"}), 1).await;
    let done = wait_for(&s, &id, Duration::from_secs(20), state_is("COMPLETED")).await;
    assert_eq!(done["claimed_by"], "real-1", "{done}");
    let (_, logs, _) = send(s.client.get(s.url(&format!("/api/queue/jobs/{id}/logs")))).await;
    assert!(logs.to_string().contains("hello over mtls"), "{logs}");
    let (_, agents, _) = send(s.client.get(s.url("/api/agents"))).await;
    let listed = &agents["data"][0];
    assert_eq!(
        (&listed["name"], &listed["status"]),
        (&json!("real-1"), &json!("HEALTHY")),
        "{agents}"
    );
    let _ = agent.kill();
    let _ = agent.wait();
}
