//! TLS on the gRPC port and the agents' CA, as `serve` is configured and as `dev` makes them:
//! `dev` keeps a local CA in `<data dir>/tls/` (created on first start) and serves TLS and
//! plaintext on one port, so `buf curl` works without certificates and agents can use mTLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchyard_grpc::Tls;
use switchyard_pki::{Authority, Signer};

use crate::config::TlsArgs;

/// How long `dev`'s server certificate is valid (it is made anew at every start).
const DEV_SERVER_CERT_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// The lifetime of agent certificates under `dev`.
const DEV_AGENT_CERT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// TLS and enrollment for one control plane.
pub struct TlsPlan {
    /// TLS on the gRPC port, if any.
    pub tls: Option<Tls>,
    /// The CA that signs agents' certificates, if this server holds its key.
    pub signer: Option<Signer>,
    /// Whether agents may connect with a bearer token instead of a certificate.
    pub agent_tokens: bool,
    /// `dev`'s CA certificate file, for the hint printed at start.
    pub dev_ca_file: Option<PathBuf>,
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{what}: cannot read {}", path.display()))
}

/// The plan `serve`'s settings describe.
pub fn serve(args: &TlsArgs) -> anyhow::Result<TlsPlan> {
    let client_ca = args
        .tls_client_ca
        .as_deref()
        .map(|p| read(p, "SWITCHYARD_TLS_CLIENT_CA"))
        .transpose()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let config = switchyard_pki::server_config(
                &read(cert, "SWITCHYARD_TLS_CERT")?,
                &read(key, "SWITCHYARD_TLS_KEY")?,
                client_ca.as_deref(),
            )
            .context("gRPC TLS")?;
            Some(Tls {
                config: Arc::new(config),
                allow_plaintext: args.grpc_plaintext,
            })
        }
        (None, _) | (_, None) => None,
    };
    let signer = match (&client_ca, &args.ca_key) {
        (Some(ca), Some(key_file)) => {
            let authority = Authority::from_pem(ca, &read(key_file, "SWITCHYARD_CA_KEY")?)
                .context("the agents' CA")?;
            Some(Signer {
                authority: Arc::new(authority),
                cert_ttl: Duration::from_secs(args.agent_cert_ttl_hours * 3600),
            })
        }
        (None, _) | (_, None) => None,
    };
    Ok(TlsPlan {
        tls,
        signer,
        agent_tokens: args.agent_tokens.unwrap_or(client_ca.is_none()),
        dev_ca_file: None,
    })
}

/// `dev`'s plan: the local CA in `<data_dir>/tls/`, a server certificate for `localhost` and
/// the loopback addresses signed by it, TLS and plaintext on one port, agent tokens allowed.
pub fn dev(data_dir: &Path) -> anyhow::Result<TlsPlan> {
    let dir = data_dir.join("tls");
    let authority = Authority::load_or_create(&dir)
        .with_context(|| format!("the local CA in {}", dir.display()))?;
    let (cert, key) = authority
        .issue_server(&["localhost", "127.0.0.1", "::1"], DEV_SERVER_CERT_TTL)
        .context("the dev server certificate")?;
    let config = switchyard_pki::server_config(&cert, &key, Some(authority.cert_pem()))
        .context("gRPC TLS")?;
    Ok(TlsPlan {
        tls: Some(Tls {
            config: Arc::new(config),
            allow_plaintext: true,
        }),
        signer: Some(Signer {
            authority: Arc::new(authority),
            cert_ttl: DEV_AGENT_CERT_TTL,
        }),
        agent_tokens: true,
        dev_ca_file: Some(dir.join("ca.pem")),
    })
}
