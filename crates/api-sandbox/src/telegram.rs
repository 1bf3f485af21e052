//! Telegram Bot API `sendMessage`: HTML entities are checked (an unescaped `<` is the classic
//! `can't parse entities`), texts over 4096 characters are refused, a wrong token answers 401,
//! and an optional per-chat rate limit answers 429 with `parameters.retry_after`. A group can
//! be made a supergroup (`/_sandbox/config {"telegram_migrate": {"chat_id", "to"}}`): from
//! then on a message to the old id answers 400 with `parameters.migrate_to_chat_id`.

use serde_json::{Value, json};

use crate::Sandbox;
use crate::http::{Req, Resp};

pub const TOKEN: &str = "sandbox-token";
const ALLOWED_TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "tg-spoiler",
    "blockquote",
    "span",
];

#[derive(Debug, Clone, serde::Serialize)]
pub struct SentMessage {
    pub chat_id: Value,
    pub text: String,
    pub parse_mode: Option<String>,
    pub message_id: u64,
}

fn tg_error(status: u16, description: &str) -> Resp {
    Resp::json(
        status,
        &json!({"ok": false, "error_code": status, "description": description}),
    )
}

pub fn fault_body(status: u16) -> Resp {
    match status {
        429 => Resp::json(
            429,
            &json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
        ),
        401 => tg_error(401, "Unauthorized"),
        403 => tg_error(403, "Forbidden: bot was blocked by the user"),
        400 => tg_error(400, "Bad Request: chat not found"),
        s => tg_error(s, "Internal Server Error"),
    }
}

/// Check HTML the way Telegram does: only known tags, balanced, `&` only as an entity.
pub fn check_html(text: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find(['<', '&']) {
        let (ch, after) = (rest.as_bytes()[pos], &rest[pos + 1..]);
        if ch == b'&' {
            let end = after.find(';').filter(|e| *e <= 8).ok_or_else(|| {
                format!(
                    "Can't find end of the entity starting at byte offset {}",
                    text.len() - rest.len() + pos
                )
            })?;
            let entity = &after[..end];
            if !matches!(entity, "lt" | "gt" | "amp" | "quot") && !entity.starts_with('#') {
                return Err(format!("Unsupported entity &{entity};"));
            }
            rest = &after[end + 1..];
            continue;
        }
        let end = after.find('>').ok_or("Unclosed start tag")?;
        let tag = &after[..end];
        let (closing, name) = match tag.strip_prefix('/') {
            Some(n) => (true, n.trim()),
            None => (false, tag.split_whitespace().next().unwrap_or("")),
        };
        if !ALLOWED_TAGS.contains(&name) {
            return Err(format!(
                "Unsupported start tag \"{name}\" at byte offset {}",
                text.len() - rest.len() + pos
            ));
        }
        if closing {
            if stack.pop().as_deref() != Some(name) {
                return Err(format!("Unexpected end tag \"{name}\""));
            }
        } else {
            stack.push(name.to_owned());
        }
        rest = &after[end + 1..];
    }
    match stack.pop() {
        Some(open) => Err(format!(
            "Can't find end tag corresponding to start tag \"{open}\""
        )),
        None => Ok(()),
    }
}

/// A chat id as text, whether it came as a number or a string.
pub fn chat_key(id: &Value) -> String {
    id.as_str().map_or_else(|| id.to_string(), str::to_owned)
}

pub fn handle(sb: &Sandbox, req: &Req, path: &str) -> Resp {
    // path: bot<TOKEN>/<method>
    let Some((bot, method)) = path.trim_start_matches('/').split_once('/') else {
        return tg_error(404, "Not Found");
    };
    if bot.strip_prefix("bot") != Some(TOKEN) {
        return tg_error(401, "Unauthorized");
    }
    if method != "sendMessage" {
        return tg_error(404, "Not Found");
    }
    let body = match req.json() {
        Ok(Value::Object(m)) => Value::Object(m),
        _ => return tg_error(400, "Bad Request: message text is empty"),
    };
    let Some(chat_id) = body
        .get("chat_id")
        .filter(|c| c.is_i64() || c.is_string())
        .cloned()
    else {
        return tg_error(400, "Bad Request: chat_id is empty");
    };
    let text = body
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if text.is_empty() {
        return tg_error(400, "Bad Request: message text is empty");
    }
    if text.chars().count() > 4096 {
        return tg_error(400, "Bad Request: message is too long");
    }
    let parse_mode = body
        .get("parse_mode")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if parse_mode.as_deref() == Some("HTML")
        && let Err(e) = check_html(&text)
    {
        return tg_error(400, &format!("Bad Request: can't parse entities: {e}"));
    }
    let mut state = sb.state();
    if let Some(to) = state.telegram_migrated.get(&chat_key(&chat_id)) {
        return Resp::json(
            400,
            &json!({"ok": false, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat", "parameters": {"migrate_to_chat_id": to}}),
        );
    }
    let now_ms = sb.wall_ms();
    let interval = state.telegram_min_interval_ms;
    if interval > 0
        && let Some(last) = state.telegram_last_ms.get(&chat_id.to_string())
        && now_ms < last + interval
    {
        let retry_after = (last + interval - now_ms).div_ceil(1000).max(1);
        return Resp::json(
            429,
            &json!({"ok": false, "error_code": 429, "description": format!("Too Many Requests: retry after {retry_after}"), "parameters": {"retry_after": retry_after}}),
        );
    }
    state.telegram_last_ms.insert(chat_id.to_string(), now_ms);
    let message_id = state.telegram_messages.len() as u64 + 1;
    state.telegram_messages.push(SentMessage {
        chat_id: chat_id.clone(),
        text: text.clone(),
        parse_mode,
        message_id,
    });
    Resp::json(
        200,
        &json!({"ok": true, "result": {"message_id": message_id, "chat": {"id": chat_id, "type": "supergroup"}, "date": sb.now(), "text": text}}),
    )
}

#[cfg(test)]
mod tests {
    use super::check_html;

    #[test]
    fn html_is_checked_like_telegram() {
        assert!(check_html("<b>qtickets</b> failed: a &lt; b &amp; c").is_ok());
        assert!(check_html("a < b").is_err());
        assert!(check_html("AT&T").is_err());
        assert!(check_html("<b>open").is_err());
        assert!(check_html("<script>x</script>").is_err());
    }
}
