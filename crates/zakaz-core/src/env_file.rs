//! `--env-file PATH`: the `KEY=VALUE` files of `secrets/`, loaded for manual runs the way
//! systemd's `EnvironmentFile=` loads them in production.

use std::path::Path;

use crate::error::config_error;

/// Parse `KEY=VALUE` lines (blank lines and `#` comments skipped, optional `export `, values
/// optionally in single or double quotes). Errors name the file and line, never the value.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(config_error(format!(
                "env file `{}` line {}: expected KEY=VALUE",
                path.display(),
                idx + 1
            )));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(config_error(format!(
                "env file `{}` line {}: `{key}` is not a valid variable name",
                path.display(),
                idx + 1
            )));
        }
        let value = value.trim();
        let value = strip_quotes(value);
        out.push((key.to_owned(), value.to_owned()));
    }
    Ok(out)
}

fn strip_quotes(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Load `path` into the process environment. Variables already set win, as with systemd
/// drop-ins: an explicit `FOO=… job --env-file …` overrides the file.
pub fn load(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error(format!("cannot read env file `{}`: {e}", path.display())))?;
    for (key, value) in parse(path, &text)? {
        if std::env::var_os(&key).is_none() {
            set_env(&key, &value);
        }
    }
    Ok(())
}

#[allow(unsafe_code)]
fn set_env(key: &str, value: &str) {
    // SAFETY: only called from `cli::parse` at the very start of `main`, before the tokio
    // runtime or any other thread is started.
    unsafe { std::env::set_var(key, value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_quotes_and_export() {
        let p = Path::new("x.env");
        let got = parse(p, "# c\n\nexport A=1\nB = \"two words\"\nC='x=y'\n").unwrap();
        assert_eq!(
            got,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x=y".into())
            ]
        );
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let err = parse(Path::new("secrets/q.env"), "A=1\nnonsense\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "env file `secrets/q.env` line 2: expected KEY=VALUE"
        );
    }
}
