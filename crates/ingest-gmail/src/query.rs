//! `GMAIL_QUERY` checked before the first request. Gmail answers a search with an operator it
//! does not know (`subjet:`) with no mail at all, not an error, so a typo would switch the
//! backup channel off without a word; and a quote or group left open would swallow what the
//! loader appends (`-label:…`, `after:…`).

/// Gmail's documented search operators.
pub const OPERATORS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "label",
    "has",
    "filename",
    "in",
    "is",
    "category",
    "after",
    "before",
    "older",
    "newer",
    "older_than",
    "newer_than",
    "size",
    "larger",
    "smaller",
    "list",
    "deliveredto",
    "rfc822msgid",
];

/// Why the query is not one to run, in a line naming `GMAIL_QUERY`.
pub fn check(query: &str) -> Result<(), String> {
    let fail = |why: String| Err(format!("`GMAIL_QUERY`: {why}"));
    if query.trim().is_empty() {
        return fail("the query is empty: it would load every mail of the mailbox".into());
    }
    let mut open: Vec<char> = Vec::new();
    let mut token = String::new();
    let mut quoted = false;
    let mut words = Vec::new();
    for c in query.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                token.push(c);
            }
            _ if quoted => token.push(c),
            '(' | '{' => {
                words.push(std::mem::take(&mut token));
                open.push(c);
            }
            ')' | '}' => {
                words.push(std::mem::take(&mut token));
                let want = if c == ')' { '(' } else { '{' };
                if open.pop() != Some(want) {
                    return fail(format!("an unmatched `{c}`"));
                }
            }
            c if c.is_whitespace() => words.push(std::mem::take(&mut token)),
            c => token.push(c),
        }
    }
    words.push(token);
    if quoted {
        return fail("a `\"` is never closed (the rest of the search would be one phrase)".into());
    }
    if let Some(c) = open.last() {
        return fail(format!(
            "a `{c}` is never closed (the rest of the search would be inside it)"
        ));
    }
    // A query that starts or ends with `OR`/`AND` would take the loader's own terms
    // (`-label:… after:…`) as its other operand.
    let terms: Vec<&String> = words.iter().filter(|w| !w.is_empty()).collect();
    for end in [terms.first(), terms.last()].into_iter().flatten() {
        if matches!(end.as_str(), "OR" | "AND" | "AROUND") {
            return fail(format!(
                "the query starts or ends with `{end}`, which would join it to the loader's own terms"
            ));
        }
    }
    for word in &words {
        let bare = word.trim_start_matches(['-', '+']);
        let Some((key, _)) = bare.split_once(':') else {
            continue;
        };
        // `10:30` or `"a:b"` are text, not operators.
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphabetic() || c == '_') {
            continue;
        }
        if !OPERATORS.contains(&key.to_ascii_lowercase().as_str()) {
            return fail(format!(
                "`{}:` is not a Gmail search operator (Gmail would silently find nothing); the operators are {}",
                key.chars().take(40).collect::<String>(),
                OPERATORS
                    .iter()
                    .map(|o| format!("{o}:"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dangling_or_is_refused() {
        for q in ["subject:x OR", "OR subject:x", "subject:x AND ", "a AROUND"] {
            let err = check(q).unwrap_err();
            assert!(err.contains("starts or ends with"), "{q}: {err}");
        }
        assert!(check("subject:x OR subject:y").is_ok());
    }

    #[test]
    fn documented_operators_and_syntax_pass() {
        for q in [
            "from:qtickets.ru subject:\"Отчёт о продажах\"",
            "{from:a.ru from:b.ru} -in:spam +Отчёт (subject:\"a:b c\" OR filename:csv) has:attachment",
            "FROM:x.ru older_than:1y newer_than:30d larger:10M size:1000 rfc822msgid:<a@b> deliveredto:me@x.ru",
            "meeting AROUND 5 report category:updates list:info@x.ru is:unread label:my-label after:2026/01/01 before:1764018000",
            "at 10:30 cc:a@b.ru bcc:c@d.ru to:me older:2026/01/01 newer:2025/01/01",
        ] {
            assert_eq!(check(q), Ok(()), "{q}");
        }
    }

    #[test]
    fn unknown_operators_and_open_groups_are_refused() {
        for (q, says) in [
            ("from:qtickets.ru subjet:Отчёт", "`subjet:`"),
            ("-sender:x.ru", "`sender:`"),
            ("(has:attachment attachment:csv)", "`attachment:`"),
            ("subject:\"Отчёт", "never closed"),
            ("{from:a.ru from:b.ru", "`{` is never closed"),
            ("from:a.ru)", "unmatched `)`"),
            ("(from:a.ru}", "unmatched `}`"),
            ("  ", "empty"),
        ] {
            let e = check(q).unwrap_err();
            assert!(
                e.starts_with("`GMAIL_QUERY`: ") && e.contains(says),
                "{q}: {e}"
            );
        }
    }
}
