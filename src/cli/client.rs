//! The CLI's connection to the control plane: the channel, the bearer credential (an explicit
//! token, or the saved session, refreshed once over `AuthService` when the server says it has
//! expired), and errors as `<code>: <message>`. Any generated service client can ride on it
//! ([`Authed::open_with`]).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use switchyard_proto::v1::RefreshRequest;
use switchyard_proto::v1::auth_service_client::AuthServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use super::session::{self, Session};

/// The server when neither `--server` nor a saved session names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// A generated `AuthService` client over a plain channel.
pub type Client = AuthServiceClient<Channel>;

/// `http://` is assumed when the address has no scheme; a trailing `/` is dropped; an empty
/// address is [`DEFAULT_SERVER`].
pub fn normalize_server(server: &str) -> String {
    let server = server.trim().trim_end_matches('/');
    if server.is_empty() {
        DEFAULT_SERVER.to_owned()
    } else if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

/// The file of extra CA certificates to trust for `https://` servers (e.g. `switchyard dev`'s
/// `.switchyard/tls/ca.pem`), besides the machine's roots.
pub const CA_FILE_ENV: &str = "SWITCHYARD_CA_FILE";

/// How long a call may take until its response begins (not a stream's later messages), unless
/// the command opts out ([`Authed::open_with`]).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects an `AuthService` client to the gRPC server at `server` (already normalized).
pub async fn connect(server: &str) -> anyhow::Result<Client> {
    Ok(AuthServiceClient::new(
        channel(server, Some(CALL_TIMEOUT)).await?,
    ))
}

/// Connects to the gRPC server at `server` (already normalized). An `https://` server is
/// verified against the machine's root certificates and the CA file in `SWITCHYARD_CA_FILE`.
/// `timeout` bounds each call until its response begins; without one (an upload, whose response
/// begins after its last byte), HTTP/2 pings notice a server that went away.
async fn channel(server: &str, timeout: Option<Duration>) -> anyhow::Result<Channel> {
    let mut endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|e| anyhow::anyhow!("invalid_argument: bad server address {server:?}: {e}"))?
        .connect_timeout(Duration::from_secs(10));
    endpoint = match timeout {
        Some(timeout) => endpoint.timeout(timeout),
        None => endpoint
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20)),
    };
    if server.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(file) = std::env::var_os(CA_FILE_ENV) {
            let pem = std::fs::read(&file).with_context(|| {
                format!(
                    "invalid_argument: cannot read {CA_FILE_ENV}={}",
                    file.to_string_lossy()
                )
            })?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint
            .tls_config(tls)
            .context("invalid_argument: TLS configuration")?;
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("unavailable: cannot reach the server at {server}"))
}

/// The error for a failed call: `<code>: <message>`, the code in `snake_case`. A call that
/// never reached the server (the connection or its TLS handshake failed) is `unavailable`,
/// with the transport's reasons.
pub fn status_error(status: &Status) -> anyhow::Error {
    if let Some(mut cause) = std::error::Error::source(status) {
        let mut reasons = cause.to_string();
        while let Some(next) = cause.source() {
            reasons = format!("{reasons}: {next}");
            cause = next;
        }
        return anyhow::anyhow!("unavailable: cannot reach the server: {reasons}");
    }
    let message = match status.message() {
        "" => status.code().description(),
        m => m,
    };
    anyhow::anyhow!("{}: {message}", code_name(status.code()))
}

/// Whether `e` (made by [`status_error`] or by [`connect`]) says the server could not be
/// reached or is unavailable: worth trying again.
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.to_string().starts_with("unavailable: ")
}

/// The `snake_case` name of a gRPC status code, as in the REST envelope's error codes.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// `Bearer <token>` as a metadata value; the error never shows the token.
fn bearer(token: &str) -> anyhow::Result<MetadataValue<Ascii>> {
    MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| anyhow::anyhow!("the token holds characters a header cannot carry"))
}

/// What the calls authenticate with.
enum Credential {
    /// `--token` / `SWITCHYARD_TOKEN`: an API key or access token, used as it is.
    Token(String),
    /// The saved session, refreshed (and saved again) when its access token has expired.
    Session {
        /// The session.
        session: Session,
        /// Its file.
        path: PathBuf,
    },
}

/// A connected client of service `C` (by default `AuthService`) that sends a bearer credential
/// on every call.
pub struct Authed<C = Client> {
    /// The service the calls go to.
    service: C,
    /// `AuthService` on the same channel, for refreshing the session.
    auth: Client,
    credential: Credential,
}

impl Authed {
    /// An `AuthService` client: [`Authed::open_with`] `AuthServiceClient::new`.
    pub async fn open(
        server: Option<&str>,
        token: Option<String>,
        path: PathBuf,
    ) -> anyhow::Result<Authed> {
        Self::open_with(
            server,
            token,
            path,
            Some(CALL_TIMEOUT),
            AuthServiceClient::new,
        )
        .await
    }
}

impl<C: Clone> Authed<C> {
    /// Connects with `token` when given, else with the session saved at `path`; to `server`
    /// when given, else to the session's server, else to [`DEFAULT_SERVER`]. `timeout` bounds
    /// each call until its response begins (usually [`CALL_TIMEOUT`]; `None`: unbounded).
    /// `service` makes the generated client the calls go to (e.g.
    /// `DeploymentServiceClient::new`).
    pub async fn open_with(
        server: Option<&str>,
        token: Option<String>,
        path: PathBuf,
        timeout: Option<Duration>,
        service: impl FnOnce(Channel) -> C,
    ) -> anyhow::Result<Authed<C>> {
        let credential = match token.filter(|t| !t.is_empty()) {
            Some(token) => Credential::Token(token),
            None => match session::load(&path)? {
                Some(session) => Credential::Session { session, path },
                None => anyhow::bail!(
                    "not logged in (no session at {}): run `switchyard login --email …`, or pass \
                     --token / SWITCHYARD_TOKEN",
                    path.display()
                ),
            },
        };
        let server = match (server.filter(|s| !s.trim().is_empty()), &credential) {
            (Some(s), _) => normalize_server(s),
            (None, Credential::Session { session, .. }) => normalize_server(&session.server),
            (None, Credential::Token(_)) => DEFAULT_SERVER.to_owned(),
        };
        let channel = channel(&server, timeout).await?;
        Ok(Authed {
            service: service(channel.clone()),
            auth: AuthServiceClient::new(channel),
            credential,
        })
    }

    /// Calls `rpc` with `req` and the credential. When the saved session's access token is
    /// refused (UNAUTHENTICATED), refreshes the session once, saves it, and calls again.
    pub async fn call<Req, Resp, F, Fut>(&mut self, req: Req, rpc: F) -> anyhow::Result<Resp>
    where
        Req: Clone,
        F: Fn(C, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let first = rpc(self.service.clone(), self.request(req.clone())?).await;
        match first {
            Ok(resp) => return Ok(resp.into_inner()),
            Err(s) if s.code() == Code::Unauthenticated && self.can_refresh() => {
                self.refresh().await?;
            }
            Err(s) => return Err(status_error(&s)),
        }
        rpc(self.service.clone(), self.request(req)?)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| status_error(&s))
    }

    fn request<Req>(&self, req: Req) -> anyhow::Result<tonic::Request<Req>> {
        let token = match &self.credential {
            Credential::Token(token) => token,
            Credential::Session { session, .. } => &session.access_token,
        };
        let mut request = tonic::Request::new(req);
        request
            .metadata_mut()
            .insert("authorization", bearer(token)?);
        Ok(request)
    }

    fn can_refresh(&self) -> bool {
        matches!(&self.credential, Credential::Session { session, .. } if !session.refresh_token.is_empty())
    }

    /// Trades the session's refresh token for a new pair and saves it.
    async fn refresh(&mut self) -> anyhow::Result<()> {
        let Credential::Session { session, path } = &mut self.credential else {
            return Ok(());
        };
        let request = RefreshRequest {
            refresh_token: session.refresh_token.clone(),
        };
        let fresh = match self.auth.refresh(request).await {
            Ok(resp) => resp
                .into_inner()
                .session
                .context("internal: the server answered a refresh without a session")?,
            Err(s) if s.code() == Code::Unauthenticated => anyhow::bail!(
                "unauthenticated: the saved session has expired or was revoked; log in again \
                 with `switchyard login --email {}`",
                session.email
            ),
            Err(s) => return Err(status_error(&s)),
        };
        session.access_token = fresh.access_token;
        session.refresh_token = fresh.refresh_token;
        session::save(path, session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_get_a_scheme_and_lose_a_trailing_slash() {
        assert_eq!(normalize_server("127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(
            normalize_server("https://sy.example/"),
            "https://sy.example"
        );
    }

    #[test]
    fn errors_read_code_then_message() {
        let e = status_error(&Status::unauthenticated("invalid credentials"));
        assert_eq!(e.to_string(), "unauthenticated: invalid credentials");
        let e = status_error(&Status::new(Code::NotFound, ""));
        assert!(e.to_string().starts_with("not_found: "), "{e}");
        assert!(!is_unavailable(&e));
        assert!(is_unavailable(&status_error(&Status::unavailable(
            "draining"
        ))));
    }
}
