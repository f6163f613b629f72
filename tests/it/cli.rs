//! The operator CLI (`switchyard login`, `logout`, `admin …`) driven as a user would, against a
//! real server: log-in, log-out and refresh here; `admin …` in [`admin`].

mod admin;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::support::{self, ADMIN_EMAIL, ADMIN_PASSWORD, Db, Server, send};

/// A fresh configuration directory, removed when dropped.
struct ConfigDir(PathBuf);

impl ConfigDir {
    fn new() -> ConfigDir {
        ConfigDir(std::env::temp_dir().join(switchyard_testkit::unique("sy-cli-")))
    }

    fn session(&self) -> PathBuf {
        self.0.join("session.json")
    }

    fn read_session(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.session()).unwrap()).unwrap()
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary with `args` against `s`, the session in `dir`, `stdin` as its input and
/// `envs` on top of a clean environment.
fn run(s: &Server, dir: &Path, args: &[&str], stdin: &str, envs: &[(&str, &str)]) -> Output {
    let mut cmd = support::binary();
    for var in [
        "SWITCHYARD_SERVER",
        "SWITCHYARD_TOKEN",
        "SWITCHYARD_EMAIL",
        "SWITCHYARD_PASSWORD",
        "SWITCHYARD_NEW_PASSWORD",
        "SWITCHYARD_CONFIG_DIR",
        "SWITCHYARD_CA_FILE",
        "XDG_CONFIG_HOME",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(args)
        .env("SWITCHYARD_SERVER", format!("http://{}", s.grpc))
        .env("SWITCHYARD_CONFIG_DIR", dir)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn switchyard");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs and asserts success; returns stdout.
fn ok(s: &Server, dir: &Path, args: &[&str], stdin: &str) -> String {
    let out = run(s, dir, args, stdin, &[]);
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// Runs and asserts failure; returns stderr.
fn fails(s: &Server, dir: &Path, args: &[&str], stdin: &str, envs: &[(&str, &str)]) -> String {
    let out = run(s, dir, args, stdin, envs);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

/// The lines of a table whose first cell is `first`, split into cells.
fn rows_starting(table: &str, first: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
        .filter(|cells| cells[0] == first)
        .collect()
}

/// Logs in as the administrator with the CLI, the session in `dir`.
fn login_admin(s: &Server, dir: &Path) {
    ok(
        s,
        dir,
        &["login", "--email", ADMIN_EMAIL],
        &format!("{ADMIN_PASSWORD}\n"),
    );
}

#[tokio::test]
async fn cli_logs_in_over_tls_trusting_the_ca_file() {
    let dir = std::env::temp_dir().join(switchyard_testkit::unique("sy-cli-tls-"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = switchyard_pki::Authority::generate("cli CA").unwrap();
    let (cert, key) = ca
        .issue_server(&["localhost"], std::time::Duration::from_secs(600))
        .unwrap();
    for (name, pem) in [
        ("server.pem", &cert),
        ("server.key", &key),
        ("ca.pem", &ca.cert_pem().to_owned()),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    let path = |name: &str| dir.join(name).display().to_string();
    let (cert_file, key_file, ca_file) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let s = Server::start(
        Db::Sqlite,
        &[
            ("SWITCHYARD_TLS_CERT", &cert_file),
            ("SWITCHYARD_TLS_KEY", &key_file),
        ],
    )
    .await;
    let cfg = ConfigDir::new();
    let https = format!("https://localhost:{}", s.grpc.port());
    let login = ["login", "--email", ADMIN_EMAIL];
    let password = format!("{ADMIN_PASSWORD}\n");
    let untrusted = fails(
        &s,
        &cfg.0,
        &login,
        &password,
        &[("SWITCHYARD_SERVER", &https)],
    );
    assert!(
        untrusted.contains("unavailable") && untrusted.contains("certificate"),
        "{untrusted}"
    );
    let out = run(
        &s,
        &cfg.0,
        &login,
        &password,
        &[
            ("SWITCHYARD_SERVER", &https),
            ("SWITCHYARD_CA_FILE", &ca_file),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(cfg.read_session()["server"], https);
    // The port serves no plaintext.
    let plain = fails(&s, &cfg.0, &login, &password, &[]);
    assert!(plain.contains("unavailable"), "{plain}");
}

#[tokio::test]
async fn cli_login_and_logout() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let cfg = ConfigDir::new();
    let dir = cfg.0.as_path();

    // A wrong password: refused, with the code, and nothing saved.
    let err = fails(
        &s,
        dir,
        &["login", "--email", ADMIN_EMAIL],
        "wrong-password-123\n",
        &[],
    );
    assert!(err.contains("unauthenticated"), "{err}");
    assert!(!cfg.session().exists());

    // Log in with the password on stdin.
    let out = run(
        &s,
        dir,
        &["login", "--email", ADMIN_EMAIL],
        &format!("{ADMIN_PASSWORD}\n"),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.trim_end(),
        format!(
            "logged in as {ADMIN_EMAIL}; session saved to {}",
            cfg.session().display()
        )
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cfg.session())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "session file mode {mode:o}");
    }
    let saved = cfg.read_session();
    for field in ["access_token", "refresh_token"] {
        let token = saved[field].as_str().unwrap();
        assert!(token.len() > 16, "{field} saved");
        assert!(!stdout.contains(token) && !text(&out.stderr).contains(token));
    }
    assert_eq!(saved["email"], ADMIN_EMAIL);
    assert_eq!(saved["server"], format!("http://{}", s.grpc));
    // The session works (the server comes from the file, not the environment).
    let out = run(
        &s,
        dir,
        &["admin", "tenant", "list"],
        "",
        &[("SWITCHYARD_SERVER", "")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Log out: the refresh token is revoked and the file deleted; then admin calls need a login.
    let refresh_token = cfg.read_session()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = ok(&s, dir, &["logout"], "");
    assert!(
        out.starts_with(&format!("logged out {ADMIN_EMAIL}")),
        "{out}"
    );
    assert!(!cfg.session().exists());
    let refresh = s
        .anon
        .post(s.url("/auth/refresh"))
        .json(&serde_json::json!({ "refresh_token": refresh_token }));
    assert_eq!(
        send(refresh).await.0,
        401,
        "the logged-out session still refreshes"
    );
    let err = fails(&s, dir, &["admin", "tenant", "list"], "", &[]);
    assert!(err.contains("not logged in"), "{err}");
}

#[tokio::test]
async fn cli_refreshes_an_expired_session_once() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let (_, body, _) = send(
        s.anon
            .post(s.url("/auth/session"))
            .json(&serde_json::json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
    )
    .await;
    let refresh_token = body["data"]["refresh_token"].as_str().unwrap().to_owned();

    // A session whose access token the server refuses, with a good refresh token.
    let cfg = ConfigDir::new();
    std::fs::create_dir_all(&cfg.0).unwrap();
    let stale = serde_json::json!({
        "server": format!("http://{}", s.grpc),
        "email": ADMIN_EMAIL,
        "access_token": "not-a-valid-jwt",
        "refresh_token": refresh_token,
    });
    std::fs::write(cfg.session(), stale.to_string()).unwrap();

    let list = ok(&s, &cfg.0, &["admin", "tenant", "list"], "");
    assert_eq!(rows_starting(&list, "default").len(), 1, "{list}");
    let saved = cfg.read_session();
    assert_ne!(saved["access_token"], "not-a-valid-jwt");
    assert_ne!(
        saved["refresh_token"].as_str(),
        Some(refresh_token.as_str())
    );
    // The refreshed pair is used as it is from now on.
    ok(&s, &cfg.0, &["admin", "role", "list"], "");
    assert_eq!(
        cfg.read_session(),
        saved,
        "a valid session was refreshed again"
    );

    // A session that cannot be refreshed: a clear error asking for a new log-in.
    let dead = serde_json::json!({
        "server": format!("http://{}", s.grpc),
        "email": ADMIN_EMAIL,
        "access_token": "not-a-valid-jwt",
        "refresh_token": "not-a-refresh-token",
    });
    std::fs::write(cfg.session(), dead.to_string()).unwrap();
    let err = fails(&s, &cfg.0, &["admin", "tenant", "list"], "", &[]);
    assert!(err.contains("switchyard: unauthenticated: "), "{err}");
    assert!(err.contains("log in again"), "{err}");
}
