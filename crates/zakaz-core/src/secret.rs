//! Secrets: a type that never prints its value, and a process-wide redactor that scrubs every
//! known secret from log lines and error messages (reqwest errors, for example, quote URLs).

use std::fmt;
use std::str::FromStr;
use std::sync::{LazyLock, RwLock};

/// Every secret value this process has seen; log writers and error printers replace them.
static KNOWN: LazyLock<RwLock<Vec<String>>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// Values shorter than this are not scrubbed from text: replacing a 2-character "secret"
/// everywhere would mangle ordinary output, and such a value protects nothing anyway.
const MIN_REDACTED_LEN: usize = 4;

/// A secret setting (token, password). `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    /// The real value, for the one place that must send it (a header, a form field).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The shortest secret a setting accepts: a shorter one guards nothing, and scrubbing it from
/// every log line would mangle ordinary text (a salt `2026` turned dates into `***-12-06`).
pub const MIN_SECRET_LEN: usize = 8;

impl FromStr for Secret {
    type Err = String;
    /// Empty is "not set"; otherwise at least [`MIN_SECRET_LEN`] characters.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = s.chars().count();
        if n > 0 && n < MIN_SECRET_LEN {
            return Err(format!(
                "a secret must be at least {MIN_SECRET_LEN} characters long (this one has {n}): set the value the service issued"
            ));
        }
        Ok(Secret::new(s))
    }
}

/// Remember a value that must never be printed (also used for secrets that arrive at run
/// time, such as OAuth access tokens).
pub fn register(value: &str) {
    if value.len() < MIN_REDACTED_LEN {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|k| k == value) {
        known.push(value.to_owned());
        // Longest first, so a secret that contains another is replaced whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// `text` with every registered secret replaced by `***`.
pub fn redact(text: &str) -> String {
    let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_owned();
    for secret in known.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_prints_stars_and_is_redacted_from_text() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2-very-secret");
        assert_eq!(
            redact("GET /bothunter2-very-secret/sendMessage failed"),
            "GET /bot***/sendMessage failed"
        );
    }

    #[test]
    fn settings_refuse_secrets_shorter_than_eight_characters() {
        assert!("2026".parse::<Secret>().is_err());
        assert!("1234567".parse::<Secret>().is_err());
        assert_eq!("12345678".parse::<Secret>().unwrap().expose(), "12345678");
        assert!("".parse::<Secret>().unwrap().is_empty(), "empty is unset");
        assert!(!"12345678".parse::<Secret>().unwrap().is_empty());
    }

    #[test]
    fn every_registered_secret_is_scrubbed_and_the_longest_first() {
        register("first-registered-secret");
        register("second-registered-secret");
        register("second-registered-secret");
        register("second-registered-secret-longer");
        assert_eq!(
            redact(
                "a first-registered-secret b second-registered-secret c second-registered-secret-longer"
            ),
            "a *** b *** c ***"
        );
    }

    #[test]
    fn short_values_are_not_scrubbed_everywhere() {
        let _ = Secret::new("ab");
        assert_eq!(redact("about"), "about");
    }
}
