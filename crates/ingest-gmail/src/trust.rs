//! Whose mail it is and when it came. `From:` and `Date:` are what the sender wrote; what
//! Google verified is in its own `Authentication-Results` header (the first one: Google puts
//! its verdict above anything that came with the mail) and in `internalDate`, when it
//! received the mail. A report is loaded only from a trusted domain whose DKIM or SPF check
//! passed, and is dated by `internalDate`.

use serde_json::Value;

/// One `method=result` of an `Authentication-Results` header, with its `ptype.property`
/// values (`header.i`, `smtp.mailfrom`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthResult {
    pub method: String,
    pub result: String,
    pub props: Vec<(String, String)>,
}

impl AuthResult {
    fn prop(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthResults {
    pub authserv_id: String,
    pub results: Vec<AuthResult>,
}

/// The header without its comments (nested parentheses, backslash pairs), quoted strings
/// kept whole: RFC 8601's `method=result (comment) ptype.property=value; …`.
fn without_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                out.push(' ');
            }
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Split on `sep` outside quoted strings.
fn split_outside_quotes(text: &str, sep: impl Fn(char) -> bool) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        if escaped {
            escaped = false;
            current.push(c);
            continue;
        }
        match c {
            '\\' if quoted => {
                escaped = true;
                current.push(c);
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if !quoted && sep(c) => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

fn unquote(value: &str) -> String {
    let Some(inner) = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|_| value.len() >= 2)
    else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

/// An `Authentication-Results` value, read generically (RFC 8601); what cannot be read is
/// left out, never an error.
pub fn parse_authentication_results(value: &str) -> AuthResults {
    let clean = without_comments(value);
    let mut sections = split_outside_quotes(&clean, |c| c == ';').into_iter();
    let authserv_id = sections
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut results = Vec::new();
    for section in sections {
        let mut tokens = split_outside_quotes(&section, char::is_whitespace)
            .into_iter()
            .filter(|t| !t.is_empty());
        let Some((method, result)) = tokens.next().and_then(|t| {
            let (m, r) = t.split_once('=')?;
            // `dkim/1=pass`: the method's version is not part of its name.
            let m = m.split('/').next().unwrap_or_default().trim();
            Some((
                m.to_ascii_lowercase(),
                unquote(r.trim()).to_ascii_lowercase(),
            ))
        }) else {
            continue;
        };
        let props = tokens
            .filter_map(|t| {
                let (k, v) = t.split_once('=')?;
                Some((k.trim().to_ascii_lowercase(), unquote(v.trim())))
            })
            .collect();
        results.push(AuthResult {
            method,
            result,
            props,
        });
    }
    AuthResults {
        authserv_id,
        results,
    }
}

/// The domain of an address or identity (`user@Example.COM` or `@example.com` or
/// `example.com`), lower-cased, without a trailing dot.
fn domain_of(identity: &str) -> String {
    let d = identity.rsplit('@').next().unwrap_or_default();
    d.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `domain` is `trusted` or one of its subdomains (label-wise: `qtickets.ru.example.net` is
/// not under `qtickets.ru`).
pub fn within(domain: &str, trusted: &str) -> bool {
    domain == trusted
        || domain
            .strip_suffix(trusted)
            .is_some_and(|head| head.ends_with('.'))
}

/// The one address of a `From:` value, or why there is not exactly one.
pub fn from_address(value: &str) -> Result<String, String> {
    // Display names and comments may hold `<`, `@` or `,` of their own.
    let mut bare = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in without_comments(value).chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if !quoted => bare.push(c),
            _ => {}
        }
    }
    if bare.contains(',') || bare.contains(';') {
        return Err("the From header names several addresses".into());
    }
    let address = match (bare.rfind('<'), bare.rfind('>')) {
        (Some(a), Some(b)) if a < b => &bare[a + 1..b],
        (None, None) => bare.as_str(),
        _ => return Err("the From header is malformed".into()),
    };
    let address = address.trim();
    match address.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !address.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(address.to_ascii_lowercase())
        }
        _ => Err("the From header holds no address".into()),
    }
}

/// Every value of a header, in order (top first).
pub fn headers<'a>(msg: &'a Value, name: &str) -> Vec<&'a str> {
    msg["payload"]["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| {
            h["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .filter_map(|h| h["value"].as_str())
        .collect()
}

/// Whether a message may be loaded.
#[derive(Debug, Clone, PartialEq)]
pub enum Sender {
    /// From `address`, authenticated for the trusted `domain`.
    Trusted { address: String, domain: String },
    /// Not loaded: `from` as far as it could be read, and why.
    Untrusted { from: String, reason: String },
}

/// Google's verdict on who sent `msg`, against the trusted domains (lower-case).
pub fn sender(msg: &Value, trusted: &[String]) -> Sender {
    let untrusted = |from: &str, reason: String| Sender::Untrusted {
        from: from.chars().filter(|c| !c.is_control()).take(120).collect(),
        reason,
    };
    let froms = headers(msg, "From");
    let [from] = froms.as_slice() else {
        return untrusted(
            froms.first().copied().unwrap_or_default(),
            format!("{} From headers", froms.len()),
        );
    };
    let address = match from_address(from) {
        Ok(a) => a,
        Err(reason) => return untrusted(from, reason),
    };
    let domain = domain_of(&address);
    let matching: Vec<&String> = trusted.iter().filter(|t| within(&domain, t)).collect();
    if matching.is_empty() {
        return untrusted(
            &address,
            format!("{domain} is not in `GMAIL_TRUSTED_SENDERS`"),
        );
    }
    let Some(google) = headers(msg, "Authentication-Results").first().copied() else {
        return untrusted(&address, "no Authentication-Results header".into());
    };
    let results = parse_authentication_results(google);
    if results.authserv_id != "mx.google.com" {
        return untrusted(
            &address,
            format!(
                "the first Authentication-Results is not Google's (`{}`)",
                results.authserv_id.chars().take(60).collect::<String>()
            ),
        );
    }
    // Domains that passed: DKIM's signing identity (Google writes `header.i`; `header.d`
    // elsewhere), SPF's envelope sender.
    let passed: Vec<String> = results
        .results
        .iter()
        .filter(|r| r.result == "pass")
        .filter_map(|r| match r.method.as_str() {
            "dkim" => r.prop("header.i").or(r.prop("header.d")).map(domain_of),
            "spf" => r.prop("smtp.mailfrom").map(domain_of),
            _ => None,
        })
        .collect();
    for t in matching {
        if passed.iter().any(|p| within(p, t)) {
            return Sender::Trusted {
                address,
                domain: t.clone(),
            };
        }
    }
    let verdicts: Vec<String> = results
        .results
        .iter()
        .filter(|r| r.method == "dkim" || r.method == "spf")
        .map(|r| {
            format!(
                "{}={}",
                r.method,
                r.result.chars().take(20).collect::<String>()
            )
        })
        .take(6)
        .collect();
    untrusted(
        &address,
        format!(
            "Google's Authentication-Results show no DKIM or SPF pass for {domain} ({})",
            if verdicts.is_empty() {
                "neither checked".to_owned()
            } else {
                verdicts.join(", ")
            }
        ),
    )
}

/// When Google received the message (`internalDate`, epoch milliseconds as a string), as
/// ClickHouse seconds, never after `now` (mail imported with a date from the future);
/// `None` when it is missing or unreadable.
pub fn received_at(msg: &Value, now: i64) -> Option<u32> {
    let ms: i64 = match &msg["internalDate"] {
        Value::String(s) => s.trim().parse().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    u32::try_from(ms.div_euclid(1000).min(now)).ok()
}

/// `GMAIL_TRUSTED_SENDERS`: comma-separated domains, lower-cased.
pub fn trusted_senders(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let domain = item
            .trim_start_matches('@')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let valid = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err(format!(
                "`GMAIL_TRUSTED_SENDERS`: `{}` is not a domain (write e.g. `qtickets.ru`)",
                item.chars().take(60).collect::<String>()
            ));
        }
        out.push(domain);
    }
    if out.is_empty() {
        return Err(
            "`GMAIL_TRUSTED_SENDERS` is empty: name the domains whose report mails may be loaded (e.g. `qtickets.ru`); mail from anyone else is never loaded"
                .into(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GOOGLE: &str = "mx.google.com; dkim=pass header.i=@example.com header.s=s1 header.b=AbCdEf12; spf=pass (google.com: domain of reports@example.com designates 1.2.3.4 as permitted sender) smtp.mailfrom=reports@example.com; dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=example.com";

    #[test]
    fn authentication_results_are_read_generically() {
        let r = parse_authentication_results(GOOGLE);
        assert_eq!(r.authserv_id, "mx.google.com");
        let methods: Vec<(&str, &str)> = r
            .results
            .iter()
            .map(|x| (x.method.as_str(), x.result.as_str()))
            .collect();
        assert_eq!(
            methods,
            [("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")]
        );
        assert_eq!(r.results[0].prop("header.i"), Some("@example.com"));
        // The comment's own `domain of …` is not a property.
        assert_eq!(
            r.results[1].props,
            [("smtp.mailfrom".to_owned(), "reports@example.com".to_owned())]
        );
        // Folding, quoted values, nested comments with `;` and `=`, versions, `none`.
        let odd = parse_authentication_results(
            "MX.Google.com 1;\r\n  dkim/1=pass (a (nested; x=y) comment) header.i=\"@b.example.com\";\r\n  none; spf=Pass smtp.mailfrom=\"we;ird\\\"@c.example\"",
        );
        assert_eq!(odd.authserv_id, "mx.google.com");
        assert_eq!(odd.results.len(), 2, "{odd:?}");
        assert_eq!(odd.results[0].prop("header.i"), Some("@b.example.com"));
        assert_eq!(odd.results[1].result, "pass");
        assert_eq!(
            odd.results[1].prop("smtp.mailfrom"),
            Some("we;ird\"@c.example")
        );
    }

    fn msg(headers: &[(&str, &str)]) -> Value {
        json!({"payload": {"headers": headers.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>()}})
    }

    #[test]
    fn only_a_trusted_domain_that_google_authenticated_is_trusted() {
        let trusted = vec!["example.com".to_owned()];
        let verdict = |from: &str, auth: &[&str]| {
            let mut h = vec![("From", from)];
            h.extend(auth.iter().map(|a| ("Authentication-Results", *a)));
            sender(&msg(&h), &trusted)
        };
        assert_eq!(
            verdict("Reports <Reports@Example.com>", &[GOOGLE]),
            Sender::Trusted {
                address: "reports@example.com".into(),
                domain: "example.com".into()
            }
        );
        // A subdomain's pass counts; SPF alone counts; DKIM alone counts.
        assert!(matches!(
            verdict(
                "r@mail.example.com",
                &["mx.google.com; spf=pass smtp.mailfrom=bounce@mail.example.com; dkim=none"]
            ),
            Sender::Trusted { .. }
        ));
        assert!(matches!(
            verdict(
                "r@example.com",
                &[
                    "mx.google.com; dkim=pass header.i=@sendgrid.net; dkim=pass header.i=r@news.example.com; spf=pass smtp.mailfrom=x@sendgrid.net"
                ]
            ),
            Sender::Trusted { .. }
        ));
        // Spoofed: Google's verdict fails; a passing header further down is the sender's.
        let spoofed = verdict(
            "r@example.com",
            &[
                "mx.google.com; dkim=fail header.i=@example.com; spf=softfail smtp.mailfrom=r@example.com",
                GOOGLE,
            ],
        );
        let Sender::Untrusted { reason, .. } = spoofed else {
            panic!("{spoofed:?}")
        };
        assert!(reason.contains("dkim=fail, spf=softfail"), "{reason}");
        // Passing, but for another domain than the trusted one.
        for (from, auth) in [
            (
                "r@example.com.evil.net",
                "mx.google.com; dkim=pass header.i=@example.com.evil.net",
            ),
            (
                "r@example.com",
                "mx.google.com; dkim=pass header.i=@evil.net; spf=pass smtp.mailfrom=r@evil.net",
            ),
            (
                "r@notexample.com",
                "mx.google.com; dkim=pass header.i=@notexample.com",
            ),
            (
                "\"r@example.com\" <x@evil.net>",
                "mx.google.com; dkim=pass header.i=@evil.net",
            ),
            ("r@example.com", "evil.net; dkim=pass header.i=@example.com"),
            ("r@example.com, x@evil.net", GOOGLE),
        ] {
            assert!(
                matches!(verdict(from, &[auth]), Sender::Untrusted { .. }),
                "{from} {auth}"
            );
        }
        assert!(matches!(
            verdict("r@example.com", &[]),
            Sender::Untrusted { .. }
        ));
        assert!(matches!(
            sender(
                &msg(&[("From", "a@example.com"), ("From", "b@example.com")]),
                &trusted
            ),
            Sender::Untrusted { .. }
        ));
    }

    #[test]
    fn received_at_is_googles_and_never_after_now() {
        let now = 1_800_000_000;
        let at = |v: Value| received_at(&json!({"internalDate": v}), now);
        assert_eq!(at(json!("1764018000000")), Some(1_764_018_000));
        assert_eq!(at(json!(1_764_018_000_123i64)), Some(1_764_018_000));
        assert_eq!(at(json!("4070908800000")), Some(now as u32), "2099: capped");
        assert_eq!(at(json!("-5")), None);
        assert_eq!(at(json!("soon")), None);
        assert_eq!(received_at(&json!({}), now), None);
    }

    #[test]
    fn trusted_senders_are_domains() {
        assert_eq!(
            trusted_senders(" QTickets.ru, @mail.example.com ,").unwrap(),
            ["qtickets.ru", "mail.example.com"]
        );
        for bad in ["", " , ", "qtickets", "*.x.ru", "a..ru", "-a.ru", "a b.ru"] {
            let e = trusted_senders(bad).unwrap_err();
            assert!(e.contains("`GMAIL_TRUSTED_SENDERS`"), "{bad}: {e}");
        }
    }
}
