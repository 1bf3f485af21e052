//! `--env-file PATH`: the `KEY=VALUE` files of `secrets/`, loaded for manual runs the way
//! systemd's `EnvironmentFile=` loads them in production.

use std::path::Path;

use crate::error::config_error;

/// Parse `KEY=VALUE` lines as systemd's `EnvironmentFile=` does (its `env-file.c`), so that a
/// manual run and a timer's run see the same values: `#` and `;` start comment lines (a
/// backslash at the end of one comments out the next line too); space
/// around the key and the value is dropped; outside quotes a backslash takes the next
/// character as it is (a backslash at the end of a line joins the next); `'…'` is literal;
/// inside `"…"` a backslash escapes only `"`, `\`, `` ` ``, `$` and a line end; quoted parts
/// and unquoted ones join. Lines systemd would ignore are errors here instead, naming the
/// file and line, never the value: a line without `=`, a key that is not a variable name, and
/// `export KEY=…` (systemd ignores such a line, so the job would never see the variable).
pub fn parse(path: &Path, text: &str) -> anyhow::Result<Vec<(String, String)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        SingleQuote,
        DoubleQuote,
        DoubleQuoteEscape,
        Comment,
        CommentEscape,
    }
    let err = |line: usize, what: String| {
        config_error(format!("env file `{}` line {line}: {what}", path.display()))
    };
    let mut out = Vec::new();
    let (mut key, mut value) = (String::new(), String::new());
    // The length of `value` before its trailing unquoted whitespace.
    let mut value_end = 0;
    let (mut line, mut key_line) = (1, 1);
    let mut state = State::PreKey;
    let mut push = |key: &mut String, value: &mut String, key_line: usize| {
        let name = key.trim_end();
        if let Some(rest) = name.strip_prefix("export ") {
            return Err(err(
                key_line,
                format!("systemd ignores `export` lines: write `{}=…`", rest.trim()),
            ));
        }
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(err(
                key_line,
                format!("`{name}` is not a valid variable name"),
            ));
        }
        out.push((name.to_owned(), std::mem::take(value)));
        key.clear();
        Ok(())
    };
    for c in text.chars().chain(std::iter::once('\n')) {
        let newline = c == '\n';
        match state {
            State::PreKey if newline || c.is_whitespace() => {}
            State::PreKey if c == '#' || c == ';' => state = State::Comment,
            State::PreKey => {
                key_line = line;
                key.push(c);
                state = State::Key;
            }
            State::Key if newline => return Err(err(key_line, "expected KEY=VALUE".to_owned())),
            State::Key if c == '=' => {
                value.clear();
                value_end = 0;
                state = State::PreValue;
            }
            State::Key => key.push(c),
            // After a closing quote `value_end` is the whole value: the space after it was
            // never taken.
            State::PreValue | State::Value if newline => {
                value.truncate(value_end);
                push(&mut key, &mut value, key_line)?;
                state = State::PreKey;
            }
            State::PreValue if c == '\'' => state = State::SingleQuote,
            State::PreValue if c == '"' => state = State::DoubleQuote,
            State::PreValue if c.is_whitespace() => {}
            State::PreValue | State::Value if c == '\\' => state = State::ValueEscape,
            State::PreValue | State::Value => {
                value.push(c);
                if !c.is_whitespace() {
                    value_end = value.len();
                }
                state = State::Value;
            }
            State::ValueEscape => {
                // An escaped line end joins the next line.
                if !newline {
                    value.push(c);
                    value_end = value.len();
                }
                state = State::Value;
            }
            State::SingleQuote if c == '\'' => {
                value_end = value.len();
                state = State::PreValue;
            }
            State::DoubleQuote if c == '"' => {
                value_end = value.len();
                state = State::PreValue;
            }
            State::DoubleQuote if c == '\\' => state = State::DoubleQuoteEscape,
            State::SingleQuote | State::DoubleQuote => value.push(c),
            State::DoubleQuoteEscape => {
                if matches!(c, '"' | '\\' | '`' | '$') {
                    value.push(c);
                } else if !newline {
                    value.push('\\');
                    value.push(c);
                }
                state = State::DoubleQuote;
            }
            State::Comment if newline => state = State::PreKey,
            // As systemd: a comment line ending in a backslash takes the next line too.
            State::Comment if c == '\\' => state = State::CommentEscape,
            State::Comment => {}
            State::CommentEscape => state = State::Comment,
        }
        if newline {
            line += 1;
        }
    }
    if matches!(
        state,
        State::SingleQuote | State::DoubleQuote | State::DoubleQuoteEscape
    ) {
        return Err(err(key_line, "a quote is never closed".to_owned()));
    }
    Ok(out)
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
    fn parses_comments_quotes_and_escapes_as_systemd() {
        let p = Path::new("x.env");
        let got = parse(
            p,
            "# c\n; c\n\nA=1\nB = \"two words\"  \nC='x=y'\nD=a\\b\nE=\"\\\"q\\\" \\x\"\nF=one\\\ntwo\nG=\n",
        )
        .unwrap();
        let want = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "x=y"),
            ("D", "ab"),
            ("E", "\"q\" \\x"),
            ("F", "onetwo"),
            ("G", ""),
        ];
        assert_eq!(
            got,
            want.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
        );
    }

    #[test]
    fn an_export_line_is_refused_as_systemd_would_ignore_it() {
        let err = parse(Path::new("q.env"), "A=1\nexport B=2\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "env file `q.env` line 2: systemd ignores `export` lines: write `B=…`"
        );
        let err = parse(Path::new("q.env"), "A=\"open\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "env file `q.env` line 1: a quote is never closed"
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
