use super::*;
use switchyard_types::TenantId;

fn identity() -> SpiffeId {
    SpiffeId {
        tenant: TenantId::parse("acme").unwrap(),
        pool: "build".to_owned(),
        agent: uuid::Uuid::new_v4(),
    }
}

#[test]
fn an_agent_certificate_carries_the_identity_the_ca_chose() {
    let ca = Authority::generate("test CA").unwrap();
    let key = AgentKey::generate().unwrap();
    let id = identity();
    let issued = ca
        .issue_agent(&key.csr_der().unwrap(), &id, Duration::from_secs(3600))
        .unwrap();
    assert_eq!(agent_identity_pem(&issued.cert_pem).unwrap(), id);
    let (from, until) = validity(&issued.cert_pem).unwrap();
    assert_eq!(until, issued.expires_at);
    assert_eq!(issued.ca_pem, ca.cert_pem());
    let span = (until - from).num_seconds();
    assert!((3600 + 290..=3600 + 310).contains(&span), "{span}");
}

#[test]
fn a_tampered_signing_request_is_refused() {
    let ca = Authority::generate("test CA").unwrap();
    let mut csr = AgentKey::generate().unwrap().csr_der().unwrap();
    verify_csr(&csr).unwrap();
    let last = csr.len() - 1;
    csr[last] ^= 0xff;
    assert!(
        ca.issue_agent(&csr, &identity(), Duration::from_secs(60))
            .is_err()
    );
    assert!(
        ca.issue_agent(b"junk", &identity(), Duration::from_secs(60))
            .is_err()
    );
}

#[test]
fn a_ca_is_reloaded_from_pem_only_with_its_own_key() {
    let ca = Authority::generate("test CA").unwrap();
    let other = Authority::generate("other CA").unwrap();
    let key = ca.issuer.key().serialize_pem();
    let reloaded = Authority::from_pem(ca.cert_pem(), &key).unwrap();
    assert_eq!(reloaded.cert_pem(), ca.cert_pem());
    let mismatch = Authority::from_pem(other.cert_pem(), &key).unwrap_err();
    assert!(
        mismatch.to_string().contains("does not belong"),
        "{mismatch}"
    );
    // A leaf certificate is not a CA, even with its own key.
    let (leaf, leaf_key) = ca
        .issue_server(&["localhost"], Duration::from_secs(60))
        .unwrap();
    let not_ca = Authority::from_pem(&leaf, &leaf_key).unwrap_err();
    assert!(not_ca.to_string().contains("not a CA"), "{not_ca}");
}

#[test]
fn the_local_ca_is_created_once_with_a_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let first = Authority::load_or_create(dir.path()).unwrap();
    let again = Authority::load_or_create(dir.path()).unwrap();
    assert_eq!(first.cert_pem(), again.cert_pem());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn server_config_takes_a_chain_and_an_optional_client_ca() {
    let ca = Authority::generate("test CA").unwrap();
    let (cert, key) = ca
        .issue_server(&["localhost", "127.0.0.1"], Duration::from_secs(60))
        .unwrap();
    let with = server_config(&cert, &key, Some(ca.cert_pem())).unwrap();
    assert_eq!(with.alpn_protocols, vec![b"h2".to_vec()]);
    server_config(&cert, &key, None).unwrap();
    assert!(server_config("", &key, None).is_err());
    assert!(server_config(&cert, "", None).is_err());
    assert!(server_config(&cert, &key, Some("not a pem")).is_err());
    // A server certificate names no agent.
    assert!(agent_identity_pem(&cert).is_err());
}
