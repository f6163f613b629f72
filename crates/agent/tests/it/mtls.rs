//! Enrolled agents: `enroll` saves a key and certificates, the agent connects with mutual TLS,
//! and renews its certificate over the stream at two thirds of its lifetime.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use switchyard_agent::{AgentError, EnrollSettings, enroll, run};
use switchyard_pki::{AgentKey, Authority};
use switchyard_proto::convert::timestamp;
use switchyard_proto::v1::connect_request::Body as Request;
use switchyard_proto::v1::connect_response::Body as Reply;
use switchyard_proto::v1::{Agent as AgentRecord, Certificate, Drain, EnrollResponse};
use switchyard_types::SpiffeId;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::helpers::{Agent, config, credits};
use crate::server::{Conn, EnrollFn, Options, PATIENCE, Server, ServerTls};

const AGENT_ID: &str = "0190a5a8-6b1c-7c3e-9a4e-1f2d3c4b5a69";

/// A CA, a server certificate for the loopback address it signed, and the agent identity.
struct Pki {
    ca: Arc<Authority>,
    server_cert: String,
    server_key: String,
}

impl Pki {
    fn new() -> Self {
        let ca = Authority::generate("test CA").unwrap();
        let (server_cert, server_key) = ca
            .issue_server(&["127.0.0.1", "localhost"], Duration::from_secs(3600))
            .unwrap();
        Self {
            ca: Arc::new(ca),
            server_cert,
            server_key,
        }
    }

    fn tls(&self) -> ServerTls {
        ServerTls {
            cert_pem: self.server_cert.clone(),
            key_pem: self.server_key.clone(),
            client_ca_pem: self.ca.cert_pem().to_owned(),
        }
    }

    /// A certificate for agent [`AGENT_ID`] of pool `build` over the key of `csr`.
    fn issue(&self, csr: &[u8], ttl: Duration) -> Certificate {
        certificate(&self.ca, csr, ttl)
    }

    /// `ca.pem`, `agent.pem` and `agent.key` in `dir`, as `enroll` leaves them, for a new key
    /// and a certificate valid `ttl`; returns the certificate.
    fn enrolled_dir(&self, dir: &Path, ttl: Duration) -> String {
        let key = AgentKey::generate().unwrap();
        let cert = self.issue(&key.csr_der().unwrap(), ttl).certificate_pem;
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca.pem"), self.ca.cert_pem()).unwrap();
        std::fs::write(dir.join("agent.pem"), &cert).unwrap();
        switchyard_pki::write_private(&dir.join("agent.key"), &key.to_pem()).unwrap();
        cert
    }

    /// The CA certificate in a file of `dir`.
    fn ca_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("trusted-ca.pem");
        std::fs::write(&path, self.ca.cert_pem()).unwrap();
        path
    }
}

fn identity() -> SpiffeId {
    format!("spiffe://switchyard/tenant/acme/pool/build/agent/{AGENT_ID}")
        .parse()
        .unwrap()
}

fn certificate(ca: &Authority, csr: &[u8], ttl: Duration) -> Certificate {
    let issued = ca.issue_agent(csr, &identity(), ttl).unwrap();
    Certificate {
        certificate_pem: issued.cert_pem,
        ca_pem: issued.ca_pem,
        expires_at: Some(timestamp(issued.expires_at)),
        spiffe_id: issued.identity.to_string(),
    }
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

/// The leaf certificate the agent presented on `conn`, DER.
fn presented(conn: &Conn) -> Vec<u8> {
    let chain = conn.peer_certs.as_ref().expect("a client certificate");
    chain.first().expect("a leaf").as_ref().to_vec()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// When a certificate (PEM) is due for renewal: two thirds into `not_before..not_after`.
fn renewal_of(cert_pem: &str) -> DateTime<Utc> {
    let (not_before, not_after) = switchyard_pki::validity(cert_pem).unwrap();
    not_before + (not_after - not_before) * 2 / 3
}

/// The TTL that puts the renewal time of a certificate issued now about `ahead` in the future
/// (the CA back-dates `not_before` a little for clock skew, which counts in the lifetime).
fn ttl_renewing_in(ca: &Authority, ahead: Duration) -> Duration {
    let key = AgentKey::generate().unwrap();
    let probe = ca
        .issue_agent(&key.csr_der().unwrap(), &identity(), Duration::ZERO)
        .unwrap();
    let (not_before, not_after) = switchyard_pki::validity(&probe.cert_pem).unwrap();
    let skew = (not_after - not_before).to_std().unwrap();
    // not_before + 2/3 (skew + ttl) = now + ahead  <=>  ttl = 3/2 ahead + skew / 2.
    ahead * 3 / 2 + skew / 2
}

/// An `Enroll` that accepts token `syt_good` for any name but `taken`, issuing one-hour
/// certificates; counts the calls.
fn enroll_fn(pki: &Pki, calls: Arc<AtomicUsize>) -> EnrollFn {
    let ca = pki.ca.clone();
    Arc::new(move |request| {
        calls.fetch_add(1, Ordering::SeqCst);
        if request.token != "syt_good" {
            return Err(Status::unauthenticated(
                "the registration token was already used",
            ));
        }
        if request.name == "taken" {
            return Err(Status::already_exists("an agent named \"taken\" exists"));
        }
        Ok(EnrollResponse {
            agent: Some(AgentRecord {
                id: AGENT_ID.into(),
                name: request.name,
                pool: "build".into(),
                ..AgentRecord::default()
            }),
            certificate: Some(certificate(&ca, &request.csr, Duration::from_secs(3600))),
        })
    })
}

fn settings(server: &Server, dir: &Path, ca_file: Option<PathBuf>) -> EnrollSettings {
    EnrollSettings {
        server: server.url.clone(),
        token: "syt_good".into(),
        name: "builder-1".into(),
        labels: BTreeMap::from([("os".to_owned(), "linux".to_owned())]),
        ca_file,
        cert_dir: dir.join("certs"),
        force: false,
    }
}

#[tokio::test]
async fn enroll_saves_the_key_and_certificates_and_the_agent_connects_with_them() {
    let pki = Pki::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut server = Server::start_with(Options {
        tls: Some(pki.tls()),
        enroll: Some(enroll_fn(&pki, calls.clone())),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = pki.ca_file(dir.path());
    let certs = dir.path().join("certs");

    let enrolled = enroll(settings(&server, dir.path(), Some(ca_file.clone())))
        .await
        .unwrap();
    assert_eq!(enrolled.agent_id, AGENT_ID);
    assert_eq!(enrolled.pool, "build");
    assert_eq!(enrolled.spiffe_id, identity().to_string());
    assert_eq!(enrolled.cert_dir, certs);
    let in_an_hour = Utc::now() + chrono::Duration::hours(1);
    assert!((in_an_hour - enrolled.expires_at).num_seconds().abs() <= 5);
    assert_eq!(mode(&certs.join("agent.key")), 0o600, "the key is private");
    assert_eq!(read(&certs, "ca.pem"), pki.ca.cert_pem());
    let cert = read(&certs, "agent.pem");
    assert_eq!(
        switchyard_pki::agent_identity_pem(&cert).unwrap(),
        identity()
    );
    let key = read(&certs, "agent.key");
    AgentKey::from_pem(&key).unwrap();

    // An enrolled directory is not overwritten, and the token is not even sent.
    let again = enroll(settings(&server, dir.path(), Some(ca_file.clone())))
        .await
        .unwrap_err();
    assert!(
        matches!(again, AgentError::AlreadyEnrolled { .. }),
        "{again}"
    );
    assert!(again.to_string().contains("--force"), "{again}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        (read(&certs, "agent.key"), read(&certs, "agent.pem")),
        (key.clone(), cert.clone())
    );

    // The agent connects with its certificate: no token, the certificate's pool.
    let mut config = config(&server.url, 1, dir.path());
    config.cert_dir = Some(certs.clone());
    config.pool = String::new();
    config.token = Some("sya_not_sent".into());
    let agent = Agent::start(config);
    let mut conn = server.accept().await;
    assert_eq!(presented(&conn), der(&cert));
    assert!(
        conn.metadata.get("authorization").is_none(),
        "no token with a certificate"
    );
    let hello = conn.welcome(5, 30).await;
    assert_eq!(hello.pool, "build");
    assert_eq!(conn.recv().await, credits(1));
    agent.stop(conn).await;

    // With --force the agent gets a new key and certificate.
    let mut forced = settings(&server, dir.path(), Some(ca_file.clone()));
    forced.force = true;
    enroll(forced).await.unwrap();
    assert_ne!(read(&certs, "agent.key"), key);
    assert_ne!(read(&certs, "agent.pem"), cert);
    assert_eq!(mode(&certs.join("agent.key")), 0o600);
}

#[tokio::test]
async fn enroll_errors_carry_the_servers_message() {
    let pki = Pki::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let server = Server::start_with(Options {
        tls: Some(pki.tls()),
        enroll: Some(enroll_fn(&pki, calls.clone())),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = pki.ca_file(dir.path());

    let mut used = settings(&server, dir.path(), Some(ca_file.clone()));
    used.token = "syt_used".into();
    let err = enroll(used).await.unwrap_err();
    assert!(
        matches!(&err, AgentError::EnrollRefused { code: Code::Unauthenticated, message, .. }
            if message == "the registration token was already used"),
        "{err:?}"
    );
    assert!(err.to_string().contains("already used"), "{err}");

    let mut taken = settings(&server, dir.path(), Some(ca_file.clone()));
    taken.name = "taken".into();
    let err = enroll(taken).await.unwrap_err();
    assert!(
        matches!(
            &err,
            AgentError::EnrollRefused {
                code: Code::AlreadyExists,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("an agent named \"taken\" exists"),
        "{err}"
    );
    assert!(
        !dir.path().join("certs/agent.key").exists(),
        "nothing saved after a refusal"
    );

    // https needs a CA to trust; the wrong one fails the handshake.
    let err = enroll(settings(&server, dir.path(), None))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::NoTrustAnchor { .. }), "{err}");
    let stranger = Authority::generate("another CA").unwrap();
    let wrong = dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong, stranger.cert_pem()).unwrap();
    let err = enroll(settings(&server, dir.path(), Some(wrong)))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Unreachable { .. }), "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the untrusted server got no token"
    );
}

#[tokio::test]
async fn the_certificate_is_renewed_at_two_thirds_of_its_lifetime_and_used_from_the_next_dial() {
    let pki = Pki::new();
    let mut server = Server::start_with(Options {
        tls: Some(pki.tls()),
        enroll: None,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let ttl = ttl_renewing_in(&pki.ca, Duration::from_secs(3));
    let old_cert = pki.enrolled_dir(&certs, ttl);
    let old_key = read(&certs, "agent.key");
    let renew_at = renewal_of(&old_cert);
    assert!(
        renew_at > Utc::now() + chrono::Duration::seconds(1),
        "{renew_at}"
    );

    let mut config = config(&server.url, 1, dir.path());
    config.cert_dir = Some(certs.clone());
    let agent = Agent::start(config);
    let mut conn = server.accept().await;
    assert_eq!(presented(&conn), der(&old_cert));
    conn.welcome(1, 30).await;
    assert_eq!(conn.recv().await, credits(1));

    let message = conn.recv().await;
    let now = Utc::now();
    let Request::Renew(renew) = message else {
        panic!("expected RenewCertificate, got {message:?}");
    };
    assert!(now >= renew_at, "not before two thirds: {now} < {renew_at}");
    assert!(
        now <= renew_at + chrono::Duration::seconds(5),
        "soon after two thirds: {now} > {renew_at}"
    );
    // Asked once: nothing else while the answer is outstanding.
    let extra = conn.within(Duration::from_millis(1500)).await;
    assert!(extra.is_none(), "one request at a time: {extra:?}");

    let renewed = pki.issue(&renew.csr, Duration::from_secs(3600));
    conn.send(Reply::Certificate(renewed.clone())).await;
    let written = Instant::now();
    while read(&certs, "agent.pem") != renewed.certificate_pem {
        assert!(
            written.elapsed() < PATIENCE,
            "the renewed certificate was not saved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new_key = read(&certs, "agent.key");
    assert_ne!(new_key, old_key, "a new key");
    assert_eq!(mode(&certs.join("agent.key")), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(&certs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !["agent.key", "agent.pem", "ca.pem"].contains(&n.to_str().unwrap()))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let extra = conn.within(Duration::from_millis(500)).await;
    assert!(
        extra.is_none(),
        "no renewal of a fresh certificate: {extra:?}"
    );

    // The next connection presents the new certificate (and proves the new key).
    conn.send(Reply::Drain(Drain {
        reason: "test".into(),
    }))
    .await;
    assert!(conn.next().await.is_none());
    let mut next = server.accept().await;
    assert_eq!(presented(&next), der(&renewed.certificate_pem));
    next.welcome(1, 30).await;
    assert_eq!(next.recv().await, credits(1));
    agent.stop(next).await;
}

#[tokio::test]
async fn a_renewal_unanswered_when_the_stream_ends_is_asked_again_on_the_next_one() {
    let pki = Pki::new();
    let mut server = Server::start_with(Options {
        tls: Some(pki.tls()),
        enroll: None,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    // Short-lived: two thirds of its lifetime are over from the start.
    let old_cert = pki.enrolled_dir(&certs, Duration::from_secs(30));
    assert!(renewal_of(&old_cert) <= Utc::now());

    let mut config = config(&server.url, 1, dir.path());
    config.cert_dir = Some(certs.clone());
    let agent = Agent::start(config);
    let mut conn = server.accept().await;
    conn.welcome(5, 30).await;
    assert_eq!(conn.recv().await, credits(1));
    let Request::Renew(first) = conn.recv().await else {
        panic!("expected RenewCertificate");
    };
    conn.fail(Status::unavailable("replica going away")).await;

    let mut next = server.accept().await;
    assert_eq!(presented(&next), der(&old_cert), "nothing renewed yet");
    next.welcome(5, 30).await;
    assert_eq!(next.recv().await, credits(1));
    let Request::Renew(second) = next.recv().await else {
        panic!("expected RenewCertificate again");
    };
    assert_ne!(second.csr, first.csr, "a new key for the new request");
    let renewed = pki.issue(&second.csr, Duration::from_secs(3600));
    next.send(Reply::Certificate(renewed.clone())).await;
    let written = Instant::now();
    while read(&certs, "agent.pem") != renewed.certificate_pem {
        assert!(
            written.elapsed() < PATIENCE,
            "the renewed certificate was not saved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.stop(next).await;
}

#[tokio::test]
async fn a_token_agent_behind_tls_trusts_its_ca_file() {
    let pki = Pki::new();
    let mut server = Server::start_with(Options {
        tls: Some(pki.tls()),
        enroll: None,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&server.url, 1, dir.path());
    config.ca_file = Some(pki.ca_file(dir.path()));
    config.token = Some("sya_key".into());
    let agent = Agent::start(config);
    let mut conn = server.accept().await;
    assert!(conn.peer_certs.is_none(), "no client certificate");
    let auth = conn.metadata.get("authorization").expect("authorization");
    assert_eq!(auth, "Bearer sya_key");
    conn.welcome(5, 30).await;
    assert_eq!(conn.recv().await, credits(1));
    agent.stop(conn).await;
}

#[tokio::test]
async fn a_certificate_directory_is_checked_at_start() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let shutdown = CancellationToken::new();
    let https = "https://127.0.0.1:1";
    let with_certs = |url: &str, pool: &str| {
        let mut c = config(url, 1, dir.path());
        c.cert_dir = Some(certs.clone());
        c.pool = pool.to_owned();
        c
    };

    let err = run(with_certs(https, ""), shutdown.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::CertificateDir { .. }), "{err}");
    assert!(err.to_string().contains("cannot read"), "{err}");

    pki.enrolled_dir(&certs, Duration::from_secs(3600));
    let err = run(with_certs(https, "deploy"), shutdown.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AgentError::PoolMismatch { configured, certificate }
            if configured == "deploy" && certificate == "build"),
        "{err}"
    );
    let err = run(with_certs("http://127.0.0.1:1", ""), shutdown.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AgentError::CertificateNeedsTls { .. }),
        "{err}"
    );

    let mut token_agent = config(https, 1, dir.path());
    token_agent.token = Some("sya_key".into());
    let err = run(token_agent, shutdown.clone()).await.unwrap_err();
    assert!(matches!(err, AgentError::NoTrustAnchor { .. }), "{err}");

    // Valid until now (to the second): expired.
    pki.enrolled_dir(&certs, Duration::ZERO);
    let err = run(with_certs(https, "build"), shutdown.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AgentError::CertificateExpired { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("re-enroll with `switchyard agent enroll`"),
        "{err}"
    );

    // A good directory and shutdown already requested: returns at once, Ok.
    pki.enrolled_dir(&certs, Duration::from_secs(3600));
    shutdown.cancel();
    tokio::time::timeout(
        Duration::from_secs(5),
        run(with_certs(https, "build"), shutdown),
    )
    .await
    .expect("returns at once")
    .expect("Ok");
}
