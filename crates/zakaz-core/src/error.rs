//! Error classes that decide a process's exit code, so units can say
//! `RestartPreventExitStatus=78` and not retry a bad configuration every 30 seconds.

/// sysexits.h codes we use on purpose.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure (remote API error, bad data): worth retrying later.
    pub const FAILURE: u8 = 1;
    /// EX_USAGE: unknown flag or command.
    pub const USAGE: u8 = 64;
    /// EX_UNAVAILABLE: a dependency (ClickHouse, MySQL) cannot be reached.
    pub const UNAVAILABLE: u8 = 69;
    /// EX_SOFTWARE: a bug (a panic), recorded and reported as one line.
    pub const SOFTWARE: u8 = 70;
    /// EX_CONFIG: a setting is missing or malformed; retrying will not help.
    pub const CONFIG: u8 = 78;
}

/// A setting is missing or malformed. The message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A dependency cannot be reached. The message names it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnavailableError(pub String);

pub fn config_error(msg: impl Into<String>) -> anyhow::Error {
    ConfigError(msg.into()).into()
}

/// The exit code an error chain asks for: the first classified error in the chain wins.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<ConfigError>() {
            return exit::CONFIG;
        }
        if cause.is::<UnavailableError>() {
            return exit::UNAVAILABLE;
        }
        if cause.is::<crate::panic::Panicked>() {
            return exit::SOFTWARE;
        }
    }
    exit::FAILURE
}

/// One line, whole cause chain, secrets scrubbed: what an operator sees in the journal.
pub fn one_line(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    let flat: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    crate::secret::redact(&flat.join(" "))
}
