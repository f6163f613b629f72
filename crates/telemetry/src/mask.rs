//! Credential masking for connection strings that may end up in logs or error messages.

use url::Url;

/// What a masked secret is replaced with.
const MASK: &str = "***";

/// Query parameters (compared case-insensitively) whose values are secrets.
const SECRET_PARAMS: &[&str] = &["password", "pass", "pwd", "sslpassword"];

/// Replaces the password in a connection URL with `***`: `postgres://user:***@host/db`,
/// `redis://:***@host`. `password=` query parameters and libpq `key=value` strings are masked as
/// well. A string without credentials is returned unchanged, byte for byte; a string that does not
/// parse as a URL but looks like `scheme://user:secret@host` is masked by a textual scan, so a
/// malformed URL never leaks its password.
pub fn mask_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) if parsed.has_host() => mask_parsed(url, parsed),
        Ok(_) | Err(_) => mask_text(url),
    }
}

/// Masks a URL the `url` crate understood; returns `original` untouched when nothing is secret.
fn mask_parsed(original: &str, mut parsed: Url) -> String {
    let mut changed = false;
    if parsed.password().is_some() && parsed.set_password(Some(MASK)).is_ok() {
        changed = true;
    }
    let has_secret_param = parsed.query_pairs().any(|(key, _)| is_secret_param(&key));
    if has_secret_param {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if is_secret_param(&key) {
                    MASK.to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed {
        parsed.to_string()
    } else {
        original.to_owned()
    }
}

/// Whether a query parameter's value is a secret.
fn is_secret_param(key: &str) -> bool {
    SECRET_PARAMS
        .iter()
        .any(|secret| key.eq_ignore_ascii_case(secret))
}

/// Textual fallback for strings the `url` crate rejects (e.g. an unencoded `/` in the password)
/// and for libpq `key=value` connection strings.
fn mask_text(text: &str) -> String {
    let masked = mask_userinfo(text);
    mask_key_value(&masked)
}

/// `scheme://user:secret@host…` → `scheme://user:***@host…`, using the last `@` so that an
/// unencoded `@` or `/` inside the password is masked too.
fn mask_userinfo(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let Some(at) = text.rfind('@') else {
        return text.to_owned();
    };
    if at < start {
        return text.to_owned();
    }
    let userinfo = &text[start..at];
    match userinfo.find(':') {
        Some(colon) => format!("{}:{MASK}{}", &text[..start + colon], &text[at..]),
        None => text.to_owned(),
    }
}

/// `… password=secret …` → `… password=*** …` (libpq style; the value may be single-quoted).
fn mask_key_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = find_secret_key(rest) {
        let (before, after) = rest.split_at(pos.value_start);
        out.push_str(before);
        out.push_str(MASK);
        rest = &after[secret_value_len(after)..];
    }
    out.push_str(rest);
    out
}

/// Where a secret `key=` value starts in `text`.
struct SecretKey {
    /// Byte offset of the first byte of the value.
    value_start: usize,
}

/// Finds the next `password=` (or another secret key) that starts a word.
fn find_secret_key(text: &str) -> Option<SecretKey> {
    let lower = text.to_ascii_lowercase();
    let mut best: Option<usize> = None;
    for key in SECRET_PARAMS {
        let needle = format!("{key}=");
        let mut from = 0;
        while let Some(found) = lower[from..].find(&needle) {
            let idx = from + found;
            let at_word_start = idx == 0
                || lower[..idx]
                    .ends_with(|c: char| c.is_whitespace() || c == '&' || c == '?' || c == ';');
            if at_word_start {
                let value_start = idx + needle.len();
                if best.is_none_or(|b| value_start < b) {
                    best = Some(value_start);
                }
                break;
            }
            from = idx + needle.len();
        }
    }
    best.map(|value_start| SecretKey { value_start })
}

/// The length of a `key=value` value: a single-quoted string (with `\'` escapes) or up to the
/// next whitespace, `&` or `;`.
fn secret_value_len(value: &str) -> usize {
    if let Some(quoted) = value.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => return i + 2,
                _ => escaped = false,
            }
        }
        value.len()
    } else {
        value
            .find(|c: char| c.is_whitespace() || c == '&' || c == ';')
            .unwrap_or(value.len())
    }
}

#[cfg(test)]
mod tests {
    use super::mask_url;

    #[test]
    fn masks_passwords_in_urls() {
        let cases = [
            (
                "postgres://user:secret@host/db",
                "postgres://user:***@host/db",
            ),
            (
                "postgres://user:secret@host:5432/db?sslmode=require",
                "postgres://user:***@host:5432/db?sslmode=require",
            ),
            ("redis://:secret@host", "redis://:***@host"),
            (
                "redis://:secret@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            (
                "redis://default:s%40cr%2Fet@host",
                "redis://default:***@host",
            ),
            ("https://u:p@example.com/x", "https://u:***@example.com/x"),
        ];
        for (input, want) in cases {
            assert_eq!(mask_url(input), want, "input {input}");
        }
    }

    #[test]
    fn leaves_urls_without_passwords_unchanged() {
        for input in [
            "redis://127.0.0.1:6379",
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://user@HOST/db",
            "sqlite://switchyard.db?mode=rwc",
            "sqlite::memory:",
            "http://example.com/a@b",
        ] {
            assert_eq!(mask_url(input), input);
        }
    }

    #[test]
    fn garbage_without_credentials_is_unchanged() {
        for input in ["", "not a url", "foo@bar", "::::", "@", "a:b", "%%%"] {
            assert_eq!(mask_url(input), input);
        }
    }

    #[test]
    fn malformed_urls_with_credentials_are_masked() {
        assert_eq!(
            mask_url("postgres://user:p/ss@host/db"),
            "postgres://user:***@host/db"
        );
        assert_eq!(
            mask_url("postgres://user:p@ss@host/db"),
            "postgres://user:***@host/db"
        );
        assert_eq!(mask_url("user:secret@host:5432"), "user:***@host:5432");
        assert!(!mask_url("redis://:a b c@host:99999").contains("a b c"));
    }

    #[test]
    fn masks_password_parameters() {
        let masked = mask_url("postgres://host/db?user=u&password=secret&sslmode=disable");
        assert!(!masked.contains("secret"), "{masked}");
        assert!(masked.contains("password=***"), "{masked}");
        assert!(masked.contains("sslmode=disable"), "{masked}");
        assert_eq!(
            mask_url("host=db user=u password=secret dbname=x"),
            "host=db user=u password=*** dbname=x"
        );
        assert_eq!(
            mask_url("host=db password='s e\\'c' x=1"),
            "host=db password=*** x=1"
        );
        assert_eq!(mask_url("PASSWORD=secret"), "PASSWORD=***");
        assert_eq!(mask_url("oldpassword=keep"), "oldpassword=keep");
    }
}
