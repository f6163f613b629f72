//! The saved session of `switchyard login`: `session.json` in the configuration directory,
//! readable by its owner only (mode 0600, in a directory of mode 0700).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The file name inside the configuration directory.
const FILE_NAME: &str = "session.json";

/// What `switchyard login` saves. Deliberately not `Debug`: it holds credentials.
#[derive(Serialize, Deserialize)]
pub struct Session {
    /// The gRPC address logged in to, e.g. `http://127.0.0.1:50051`.
    pub server: String,
    /// The email logged in as.
    pub email: String,
    /// The current access token (a JWT).
    pub access_token: String,
    /// The current refresh token (single use; replaced on every refresh).
    pub refresh_token: String,
}

/// Where the session file lives: `dir/session.json` when a directory is given (flag or
/// `SWITCHYARD_CONFIG_DIR`), else `$XDG_CONFIG_HOME/switchyard/session.json`, else
/// `$HOME/.config/switchyard/session.json`.
pub fn path(config_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = config_dir.filter(|d| !d.as_os_str().is_empty()) {
        return Ok(dir.join(FILE_NAME));
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(xdg) = absolute("XDG_CONFIG_HOME") {
        return Ok(xdg.join("switchyard").join(FILE_NAME));
    }
    if let Some(home) = absolute("HOME") {
        return Ok(home.join(".config").join("switchyard").join(FILE_NAME));
    }
    anyhow::bail!(
        "cannot tell where to keep the session: set SWITCHYARD_CONFIG_DIR (or XDG_CONFIG_HOME or HOME)"
    )
}

/// Reads the session at `path`; `None` when there is none.
pub fn load(path: &Path) -> anyhow::Result<Option<Session>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the session at {}", path.display()));
        }
    };
    // The parse error names a position, never the content.
    let session = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "the session at {} is damaged (log in again)",
            path.display()
        )
    })?;
    Ok(Some(session))
}

/// Writes `session` to `path` atomically (a temporary file in the same directory, renamed),
/// mode 0600, creating the directory (mode 0700) if need be.
pub fn save(path: &Path, session: &Session) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json = serde_json::to_vec_pretty(session).context("cannot encode the session")?;
    let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let written = write_private(&tmp, &json).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("cannot write the session to {}", path.display()))
}

/// Deletes the session at `path`; whether there was one.
pub fn remove(path: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
    }
}

#[cfg(unix)]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Creates `path` (which must not exist) readable and writable by its owner only, and fills it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Session {
        Session {
            server: "http://127.0.0.1:50051".into(),
            email: "a@b.test".into(),
            access_token: "acc".into(),
            refresh_token: "ref".into(),
        }
    }

    #[test]
    fn saves_private_and_loads_back_and_removes() {
        let dir = std::env::temp_dir().join(format!("sy-session-{}", std::process::id()));
        let path = path(Some(&dir.join("nested"))).unwrap();
        assert!(load(&path).unwrap().is_none());
        save(&path, &sample()).unwrap();
        // Saving over an existing file keeps it private and replaces it.
        save(&path, &sample()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = load(&path).unwrap().unwrap();
        assert_eq!(back.refresh_token, "ref");
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_an_error_that_does_not_echo_it() {
        let dir = std::env::temp_dir().join(format!("sy-session-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE_NAME);
        std::fs::write(&path, "secret-token-not-json").unwrap();
        let e = format!("{:#}", load(&path).err().unwrap());
        assert!(e.contains("damaged"), "{e}");
        assert!(!e.contains("secret-token"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
