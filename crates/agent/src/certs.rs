//! The enrolled agent's certificate directory: `agent.key` (its private key, mode 0600),
//! `agent.pem` (its certificate) and `ca.pem` (the Switchyard CA). Enrollment writes them,
//! every dial reads them afresh, and a renewal replaces the key and the certificate together.
//!
//! Replacing them together: both are written to `agent.key.new` and `agent.pem.new` first,
//! then renamed over the old ones, the key first. A crash between the two renames leaves the
//! new key beside `agent.pem.new`, which [`CertDir::open`] then moves into place; a crash
//! before them leaves the old pair intact (and the `.new` files are dropped).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use switchyard_pki::AgentKey;
use switchyard_types::SpiffeId;

use crate::config::AgentError;

/// The agent's private key.
pub(crate) const KEY_FILE: &str = "agent.key";
/// The agent's certificate.
pub(crate) const CERT_FILE: &str = "agent.pem";
/// The CA certificate the agent trusts (as the Switchyard CA handed it out).
pub(crate) const CA_FILE: &str = "ca.pem";
/// What a file becomes while it is being replaced.
const NEW: &str = ".new";

/// The files of a certificate directory, as read for one dial.
pub(crate) struct Files {
    /// `ca.pem`.
    pub(crate) ca_pem: String,
    /// `agent.pem`.
    pub(crate) cert_pem: String,
    /// `agent.key`.
    pub(crate) key_pem: String,
}

/// An enrolled agent's certificate directory, and when to renew what it holds.
#[derive(Debug)]
pub(crate) struct CertDir {
    dir: PathBuf,
    /// Who the certificate says the agent is.
    pub(crate) identity: SpiffeId,
    /// When the certificate on disk expires.
    pub(crate) expires_at: DateTime<Utc>,
    /// When two thirds of its lifetime have passed.
    pub(crate) renew_at: DateTime<Utc>,
}

/// Two thirds of the way from `not_before` to `not_after`.
pub(crate) fn renewal_time(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> DateTime<Utc> {
    not_before + (not_after - not_before) * 2 / 3
}

impl CertDir {
    /// The directory `dir`: finishes a replacement a crash interrupted, then checks that the
    /// three files are there, that the certificate names a Switchyard agent and that it has
    /// not expired.
    pub(crate) fn open(dir: &Path) -> Result<Self, AgentError> {
        recover(dir).map_err(|reason| invalid(dir, reason))?;
        let files = read(dir).map_err(|reason| invalid(dir, reason))?;
        AgentKey::from_pem(&files.key_pem)
            .map_err(|e| invalid(dir, format!("{}: {e}", dir.join(KEY_FILE).display())))?;
        let (identity, not_before, not_after) =
            inspect(&files.cert_pem).map_err(|reason| invalid(dir, reason))?;
        if not_after <= Utc::now() {
            return Err(AgentError::CertificateExpired {
                dir: dir.to_owned(),
                expired_at: not_after,
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
            identity,
            expires_at: not_after,
            renew_at: renewal_time(not_before, not_after),
        })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Installs a renewed certificate for `key`: it must name the same agent and not have
    /// expired. Returns its expiry.
    pub(crate) fn install(
        &mut self,
        key: &AgentKey,
        cert_pem: &str,
        ca_pem: &str,
    ) -> Result<DateTime<Utc>, String> {
        let (identity, not_before, not_after) = inspect(cert_pem)?;
        if identity != self.identity {
            return Err(format!(
                "the renewed certificate names {identity}, not {}",
                self.identity
            ));
        }
        if not_after <= Utc::now() {
            return Err(format!("the renewed certificate expired at {not_after}"));
        }
        write_all(&self.dir, key, cert_pem, ca_pem)?;
        self.expires_at = not_after;
        self.renew_at = renewal_time(not_before, not_after);
        Ok(not_after)
    }
}

fn invalid(dir: &Path, reason: String) -> AgentError {
    AgentError::CertificateDir {
        dir: dir.to_owned(),
        reason,
    }
}

/// The identity and validity of a certificate (PEM).
pub(crate) fn inspect(cert_pem: &str) -> Result<(SpiffeId, DateTime<Utc>, DateTime<Utc>), String> {
    let identity = switchyard_pki::agent_identity_pem(cert_pem).map_err(|e| e.to_string())?;
    let (not_before, not_after) = switchyard_pki::validity(cert_pem).map_err(|e| e.to_string())?;
    Ok((identity, not_before, not_after))
}

/// Reads the three files of `dir`.
pub(crate) fn read(dir: &Path) -> Result<Files, String> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    Ok(Files {
        ca_pem: read(CA_FILE)?,
        cert_pem: read(CERT_FILE)?,
        key_pem: read(KEY_FILE)?,
    })
}

/// Writes `key`, its certificate and the CA into `dir` (which must exist), each file replaced
/// atomically, the key and the certificate as a pair (see the module's documentation).
pub(crate) fn write_all(
    dir: &Path,
    key: &AgentKey,
    cert_pem: &str,
    ca_pem: &str,
) -> Result<(), String> {
    let path = |name: &str| dir.join(name);
    let new = |name: &str| dir.join(format!("{name}{NEW}"));
    write_file(&new(CA_FILE), ca_pem, false)?;
    rename(&new(CA_FILE), &path(CA_FILE))?;
    write_file(&new(KEY_FILE), &key.to_pem(), true)?;
    write_file(&new(CERT_FILE), cert_pem, false)?;
    rename(&new(KEY_FILE), &path(KEY_FILE))?;
    rename(&new(CERT_FILE), &path(CERT_FILE))?;
    sync_dir(dir);
    Ok(())
}

/// Finishes or drops a replacement a crash interrupted.
fn recover(dir: &Path) -> Result<(), String> {
    let new_key = dir.join(format!("{KEY_FILE}{NEW}"));
    let new_cert = dir.join(format!("{CERT_FILE}{NEW}"));
    if new_key.exists() {
        // Neither file was renamed: the old pair is whole.
        for file in [&new_key, &new_cert] {
            if file.exists() {
                std::fs::remove_file(file)
                    .map_err(|e| format!("cannot remove {}: {e}", file.display()))?;
            }
        }
    } else if new_cert.exists() {
        // The key was renamed, the certificate not yet.
        tracing::warn!(dir = %dir.display(), "finishing an interrupted certificate renewal");
        rename(&new_cert, &dir.join(CERT_FILE))?;
    }
    Ok(())
}

/// Writes `contents` to `path` (created or truncated) and flushes it to disk; `private`: mode
/// 0600.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), String> {
    let failed = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    if private {
        switchyard_pki::write_private(path, contents).map_err(|e| failed(&e))?;
        let file = std::fs::File::open(path).map_err(|e| failed(&e))?;
        return file.sync_all().map_err(|e| failed(&e));
    }
    let mut file = std::fs::File::create(path).map_err(|e| failed(&e))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| failed(&e))
}

fn rename(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::rename(from, to)
        .map_err(|e| format!("cannot rename {} to {}: {e}", from.display(), to.display()))
}

/// Makes the renames durable (best effort: not every platform can sync a directory).
fn sync_dir(dir: &Path) {
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Creates `dir` (and its parents) if needed, readable by its owner only when created.
pub(crate) fn create_dir(dir: &Path) -> Result<(), String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchyard_pki::Authority;

    use super::*;

    fn identity() -> SpiffeId {
        "spiffe://switchyard/tenant/t1/pool/build/agent/0190a5a8-6b1c-7c3e-9a4e-1f2d3c4b5a69"
            .parse()
            .unwrap()
    }

    fn issue(ca: &Authority, key: &AgentKey, ttl: Duration) -> String {
        let csr = key.csr_der().unwrap();
        ca.issue_agent(&csr, &identity(), ttl).unwrap().cert_pem
    }

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_lifetime() {
        let start = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let end = start + chrono::Duration::seconds(300);
        assert_eq!(
            renewal_time(start, end),
            start + chrono::Duration::seconds(200)
        );
    }

    #[test]
    fn a_replacement_is_whole_and_an_interrupted_one_is_finished_or_dropped() {
        let ca = Authority::generate("test CA").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let old_key = AgentKey::generate().unwrap();
        let old_cert = issue(&ca, &old_key, Duration::from_secs(3600));
        write_all(dir.path(), &old_key, &old_cert, ca.cert_pem()).unwrap();
        let mut certs = CertDir::open(dir.path()).unwrap();
        assert_eq!(certs.identity, identity());

        let new_key = AgentKey::generate().unwrap();
        let new_cert = issue(&ca, &new_key, Duration::from_secs(7200));
        let expiry = certs.install(&new_key, &new_cert, ca.cert_pem()).unwrap();
        assert_eq!(expiry, certs.expires_at);
        let files = read(dir.path()).unwrap();
        assert_eq!(
            (files.cert_pem.as_str(), files.key_pem),
            (new_cert.as_str(), new_key.to_pem())
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(NEW))
            .collect();
        assert!(names.is_empty(), "no temporary file left: {names:?}");

        // Crash after the key was renamed: the certificate follows at the next start.
        let newer_key = AgentKey::generate().unwrap();
        let newer_cert = issue(&ca, &newer_key, Duration::from_secs(3600));
        std::fs::write(dir.path().join(KEY_FILE), newer_key.to_pem()).unwrap();
        std::fs::write(dir.path().join("agent.pem.new"), &newer_cert).unwrap();
        CertDir::open(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap().cert_pem, newer_cert);

        // Crash before any rename: the old pair stays, the new files go.
        std::fs::write(dir.path().join("agent.key.new"), "partial").unwrap();
        std::fs::write(dir.path().join("agent.pem.new"), "partial").unwrap();
        CertDir::open(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap().cert_pem, newer_cert);
        assert!(!dir.path().join("agent.key.new").exists());
        assert!(!dir.path().join("agent.pem.new").exists());
    }

    #[test]
    fn a_renewed_certificate_for_someone_else_is_refused() {
        let ca = Authority::generate("test CA").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = AgentKey::generate().unwrap();
        let cert = issue(&ca, &key, Duration::from_secs(3600));
        write_all(dir.path(), &key, &cert, ca.cert_pem()).unwrap();
        let mut certs = CertDir::open(dir.path()).unwrap();
        let other: SpiffeId =
            "spiffe://switchyard/tenant/t2/pool/build/agent/0190a5a8-6b1c-7c3e-9a4e-1f2d3c4b5a69"
                .parse()
                .unwrap();
        let new_key = AgentKey::generate().unwrap();
        let foreign = ca
            .issue_agent(&new_key.csr_der().unwrap(), &other, Duration::from_secs(60))
            .unwrap()
            .cert_pem;
        let err = certs
            .install(&new_key, &foreign, ca.cert_pem())
            .unwrap_err();
        assert!(err.contains("t2"), "{err}");
        assert_eq!(read(dir.path()).unwrap().cert_pem, cert, "unchanged");
    }

    #[test]
    fn an_expired_certificate_is_an_error_at_start() {
        let ca = Authority::generate("test CA").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = AgentKey::generate().unwrap();
        // Valid until now (to the second): expired.
        let cert = issue(&ca, &key, Duration::ZERO);
        write_all(dir.path(), &key, &cert, ca.cert_pem()).unwrap();
        let err = CertDir::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, AgentError::CertificateExpired { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("switchyard agent enroll"), "{err}");
    }
}
