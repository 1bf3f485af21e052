//! A Gmail message's MIME tree as the API returns it (`format=full`): the parts worth
//! reading, their bodies decoded from base64url (padded or not), text in the charset it
//! really is in (the API may hand back UTF-8 under a `windows-1251` header).

use serde_json::Value;

/// One leaf of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub mime: String,
    pub filename: String,
    /// The charset the part declares (`Content-Type: …; charset=…`), lower-cased.
    pub charset: Option<String>,
    /// Inline data, already decoded.
    pub data: Option<Vec<u8>>,
    /// Where the data is when it is not inline: valid for this fetch of the message only.
    pub attachment_id: Option<String>,
    /// The size Gmail states (`body.size`), known before the data is fetched.
    pub size: Option<u64>,
}

/// Every leaf part, depth first.
pub fn leaves(payload: &Value) -> anyhow::Result<Vec<Part>> {
    let mut out = Vec::new();
    walk(payload, &mut out, 0)?;
    Ok(out)
}

fn walk(part: &Value, out: &mut Vec<Part>, depth: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        depth < 32,
        "the message's MIME tree is deeper than 32 levels"
    );
    if let Some(children) = part["parts"].as_array().filter(|c| !c.is_empty()) {
        for child in children {
            walk(child, out, depth + 1)?;
        }
        return Ok(());
    }
    let header = |name: &str| {
        part["headers"].as_array().and_then(|hs| {
            hs.iter()
                .find(|h| {
                    h["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .and_then(|h| h["value"].as_str())
        })
    };
    let charset = header("Content-Type").and_then(|ct| {
        ct.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k.trim().eq_ignore_ascii_case("charset"))
                .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
        })
    });
    let data = match part["body"]["data"].as_str() {
        Some(d) => Some(base64url_decode(d)?),
        None => None,
    };
    out.push(Part {
        mime: part["mimeType"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase(),
        filename: part["filename"].as_str().unwrap_or_default().to_owned(),
        charset,
        data,
        attachment_id: part["body"]["attachmentId"].as_str().map(str::to_owned),
        size: part["body"]["size"].as_u64(),
    });
    Ok(())
}

/// Base64url with or without padding (Gmail sends both); whitespace ignored.
pub fn base64url_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut n) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            b'=' | b'\r' | b'\n' | b' ' => continue,
            other => anyhow::bail!("not base64url: byte {other:#04x}"),
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    Ok(out)
}

/// Text in the charset it is really in: valid UTF-8 is UTF-8 whatever the header says (the
/// API was seen to re-encode a `windows-1251` part without changing its header); otherwise
/// the declared charset, or Windows-1251 (what Russian reports come in) when it is unknown.
pub fn text(bytes: &[u8], declared: Option<&str>) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_owned();
    }
    let encoding = declared
        .and_then(|d| encoding_rs::Encoding::for_label(d.as_bytes()))
        .filter(|e| *e != encoding_rs::UTF_8)
        .unwrap_or(encoding_rs::WINDOWS_1251);
    encoding.decode_without_bom_handling(bytes).0.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_padded_or_not() {
        assert_eq!(base64url_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64url_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64url_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert!(base64url_decode("a*b").is_err());
    }

    #[test]
    fn charsets_by_what_the_bytes_are() {
        // "Дата" in UTF-8 under a windows-1251 header, and really in windows-1251.
        assert_eq!(text("Дата".as_bytes(), Some("windows-1251")), "Дата");
        assert_eq!(
            text(&[0xC4, 0xE0, 0xF2, 0xE0], Some("windows-1251")),
            "Дата"
        );
        assert_eq!(text(&[0xC4, 0xE0, 0xF2, 0xE0], None), "Дата");
        assert_eq!(text(b"\xEF\xBB\xBFdate", None), "date");
        // A declared charset other than UTF-8 is believed; "UTF-8" on bytes that are not is
        // the Russian default.
        assert_eq!(text(&[0xE4, 0xC1, 0xD4, 0xC1], Some("koi8-r")), "Дата");
        assert_eq!(text(&[0xC4, 0xE0, 0xF2, 0xE0], Some("utf-8")), "Дата");
    }

    #[test]
    fn a_tree_deeper_than_32_levels_is_refused() {
        let nest = |levels: usize| {
            let mut part = serde_json::json!({"mimeType": "text/plain", "body": {"data": "aGk"}});
            for _ in 0..levels {
                part = serde_json::json!({"mimeType": "multipart/mixed", "parts": [part]});
            }
            part
        };
        assert_eq!(leaves(&nest(31)).unwrap().len(), 1);
        let e = leaves(&nest(32)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the message's MIME tree is deeper than 32 levels"
        );
    }

    #[test]
    fn leaves_of_a_nested_tree() {
        let payload = serde_json::json!({"mimeType": "multipart/mixed", "parts": [
            {"mimeType": "multipart/alternative", "parts": [
                {"mimeType": "text/plain", "headers": [{"name": "Content-Type", "value": "text/plain; charset=\"UTF-8\""}], "body": {"data": "aGk"}},
            ]},
            {"mimeType": "text/csv", "filename": "r.csv", "body": {"attachmentId": "A1", "size": 3}}
        ]});
        let parts = leaves(&payload).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].charset.as_deref(), Some("utf-8"));
        assert_eq!(parts[0].data.as_deref(), Some(&b"hi"[..]));
        assert_eq!(parts[1].attachment_id.as_deref(), Some("A1"));
    }
}
