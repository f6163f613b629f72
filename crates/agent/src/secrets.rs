//! The agent's local secrets: read once at start from a JSON object `{"NAME": "value", …}`,
//! handed to the jobs that name them, and masked in every job's output.
//!
//! Secret values never leave this module except as environment variables of a job's process
//! and as patterns of the [`Masker`]; `Debug` shows names only.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::config::AgentError;
use crate::mask::Masker;

/// Values shorter than this are too likely to occur by chance to be masked.
pub(crate) const MIN_MASKED_LEN: usize = 4;

/// The secrets a job may name, and the masker of their values.
pub(crate) struct Secrets {
    /// Value by name.
    values: BTreeMap<String, String>,
    /// Masks every value of at least [`MIN_MASKED_LEN`] bytes, named by the job or not.
    masker: Masker,
}

impl Secrets {
    /// Reads the secrets file; no file means no secrets.
    pub(crate) async fn load(path: Option<&Path>) -> Result<Self, AgentError> {
        let Some(path) = path else {
            return Ok(Self::new(BTreeMap::new()));
        };
        let bytes =
            tokio::fs::read(path)
                .await
                .map_err(|source| AgentError::SecretsUnreadable {
                    path: path.to_owned(),
                    source,
                })?;
        // serde_json's messages may quote the offending value: report the position only.
        let values = serde_json::from_slice(&bytes).map_err(|e| AgentError::SecretsMalformed {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
        })?;
        let secrets = Self::new(values);
        tracing::info!(path = %path.display(), count = secrets.values.len(), "secrets loaded");
        Ok(secrets)
    }

    /// Secrets from a map of value by name; warns (by name) about values too short to mask.
    pub(crate) fn new(values: BTreeMap<String, String>) -> Self {
        let short: Vec<&str> = values
            .iter()
            .filter(|(_, v)| v.len() < MIN_MASKED_LEN)
            .map(|(k, _)| k.as_str())
            .collect();
        if !short.is_empty() {
            tracing::warn!(
                names = ?short,
                "secret values shorter than {MIN_MASKED_LEN} bytes are not masked in job logs"
            );
        }
        let masker = Masker::new(
            values
                .values()
                .filter(|v| v.len() >= MIN_MASKED_LEN)
                .map(|v| v.as_bytes().into()),
        );
        Self { values, masker }
    }

    /// The value of secret `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A fresh streaming masker for one job's output.
    pub(crate) fn masker(&self) -> Masker {
        self.masker.clone()
    }

    /// `text` with every secret value replaced by `***`.
    pub(crate) fn mask(&self, text: &str) -> String {
        self.masker.mask_str(text)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn load_text(text: &str) -> Result<Secrets, AgentError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        Secrets::load(Some(file.path())).await
    }

    #[tokio::test]
    async fn a_json_object_of_strings_is_loaded() {
        let secrets = load_text(r#"{"DB_PASSWORD": "hunter2hunter2", "PIN": "123"}"#)
            .await
            .unwrap();
        assert_eq!(secrets.get("DB_PASSWORD"), Some("hunter2hunter2"));
        assert_eq!(secrets.get("PIN"), Some("123"));
        assert_eq!(secrets.get("OTHER"), None);
        assert_eq!(
            secrets.mask("pw=hunter2hunter2 pin=123"),
            "pw=*** pin=123",
            "values under 4 bytes are not masked"
        );
        let shown = format!("{secrets:?}");
        assert!(
            shown.contains("DB_PASSWORD") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn no_file_means_no_secrets() {
        let secrets = Secrets::load(None).await.unwrap();
        assert_eq!(secrets.get("X"), None);
        assert_eq!(secrets.mask("anything"), "anything");
    }

    #[tokio::test]
    async fn unreadable_and_malformed_files_are_errors_without_values() {
        let missing = Secrets::load(Some(Path::new("/nonexistent/secrets.json"))).await;
        assert!(matches!(missing, Err(AgentError::SecretsUnreadable { .. })));
        for text in [
            r#"{"TOKEN": 12345678}"#,
            r#"["topsecretvalue"]"#,
            r#"{"TOKEN": "topsecretvalue""#,
        ] {
            let err = load_text(text).await.unwrap_err();
            assert!(matches!(err, AgentError::SecretsMalformed { .. }), "{err}");
            let message = err.to_string();
            assert!(
                !message.contains("12345678") && !message.contains("topsecretvalue"),
                "{message}"
            );
        }
    }
}
