//! Property tests: every parser entry point is total over arbitrary input (never panics) and
//! bounded in what it gives back (no more rows than `GMAIL_MAX_REPORT_ROWS`, messages of a
//! bounded length).

use ingest_gmail::report::{self, Limits, Parsed};
use ingest_gmail::{mime, query, trust};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Pieces of HTML, CSV and text that trip naive parsers: tags in any case, entities, letters
/// whose lower case is longer or shorter than themselves, separators, quotes.
const PIECES: &[&str] = &[
    "<table>",
    "<TABLE border=1>",
    "</table>",
    "</TaBlE>",
    "<tr>",
    "</tr>",
    "<TR>",
    "<td>",
    "</td>",
    "<th>",
    "</th>",
    "<TD class=x>",
    "<b>",
    "</b>",
    "<",
    ">",
    "<!--",
    "-->",
    "&amp;",
    "&nbsp;",
    "&#x41;",
    "&#99999999;",
    "&#x;",
    "&",
    ";",
    "İ",
    "ẞ",
    "Σ",
    "ǅ",
    "Ⱥ",
    "K",
    "ı",
    "Дата",
    "Событие",
    "Продано билетов",
    "Выручка",
    "date",
    "event",
    "tickets",
    "revenue",
    "Москва",
    "24.11.2026",
    "2026-11-24",
    "45000",
    "1 000,00",
    "1.234.567,89",
    "-5",
    "₽",
    "\"",
    "\"\"",
    ";",
    ",",
    "\n",
    "\r\n",
    " ",
    "\u{feff}",
    "\u{a0}",
    "x",
    "9999999999999999999999",
];

/// A header every report parser accepts, so that rows get parsed too.
const HEADER_CSV: &str = "Дата;Событие;Продано билетов;Выручка\n";
const HEADER_HTML: &str =
    "<table><tr><th>Дата</th><th>Событие</th><th>Продано билетов</th><th>Выручка</th></tr>";

fn pieces() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(PIECES).prop_map(str::to_owned),
            1 => any::<char>().prop_map(String::from),
        ],
        0..160,
    )
    .prop_map(|v| v.concat())
}

/// Small limits, so that arbitrary input reaches them.
fn small() -> Limits {
    Limits {
        attachment_bytes: 4096,
        table_cells: 40,
        rows: 3,
    }
}

/// Whatever a parser gave is within the limits, and its messages are short.
fn bounded(result: anyhow::Result<Parsed>, limits: &Limits) -> Result<(), TestCaseError> {
    match result {
        Ok(p) => {
            prop_assert!(p.rows.len() + p.errors.len() <= limits.rows);
            for e in &p.errors {
                prop_assert!(e.reason.chars().count() <= 200, "{}", e.reason);
            }
        }
        Err(e) => {
            let text = format!("{e:#}");
            prop_assert!(text.chars().count() <= 400, "{text}");
        }
    }
    Ok(())
}

fn cell_ref() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z]{1,3}[1-9][0-9]{0,6}",
        Just("XFD1048576".to_owned()),
        Just("A99999999999".to_owned()),
        Just("ZZZZZZZZZZ1".to_owned()),
        "[A-Za-z0-9:$]{0,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn html_is_total_and_bounded(text in pieces()) {
        for body in [
            text.clone(),
            format!("<p>Отчёт İstanbul</p>{text}"),
            format!("<p>İİİ</p>{HEADER_HTML}{text}"),
        ] {
            bounded(report::html(&body, &small()), &small())?;
        }
    }

    #[test]
    fn html_is_total_over_any_string(text in any::<String>()) {
        bounded(report::html(&text, &small()), &small())?;
    }

    #[test]
    fn csv_is_total_and_bounded(text in pieces()) {
        bounded(report::csv(&text, &small()), &small())?;
        bounded(report::csv(&format!("{HEADER_CSV}{text}"), &small()), &small())?;
    }

    #[test]
    fn xlsx_is_total_over_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        bounded(report::xlsx(&bytes, &small()), &small())?;
    }

    /// Well-formed packages with cells anywhere (refs past the grid, overflowing ones,
    /// garbage) and any dimension claim.
    #[test]
    fn xlsx_sheets_with_cells_anywhere_are_total_and_bounded(
        cells in prop::collection::vec((cell_ref(), pieces()), 0..30),
        dimension in prop::option::of("[A-Z0-9:]{0,20}"),
        header in any::<bool>(),
    ) {
        let mut cells = cells;
        if header {
            for (r, v) in [("A1", "Дата"), ("B1", "Событие"), ("C1", "Продано билетов"), ("D1", "Выручка")] {
                cells.push((r.to_owned(), v.to_owned()));
            }
        }
        let bytes = api_sandbox::gmail::xlsx_cells(&cells, dimension.as_deref());
        bounded(report::xlsx(&bytes, &small()), &small())?;
    }

    #[test]
    fn mime_is_total(bytes in prop::collection::vec(any::<u8>(), 0..512), text in any::<String>()) {
        let _ = mime::text(&bytes, Some(&text));
        if let Ok(decoded) = mime::base64url_decode(&text) {
            prop_assert!(decoded.len() <= text.len());
        }
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            let _ = mime::leaves(&v);
        }
    }

    /// Gmail's JSON models: any tree of parts, headers and bodies of any type.
    #[test]
    fn message_models_are_total(payload in json_tree(), internal in json_leaf()) {
        let msg = json!({"payload": payload, "internalDate": internal});
        let _ = mime::leaves(&msg["payload"]);
        let _ = trust::sender(&msg, &["qtickets.ru".to_owned()]);
        if let Some(t) = trust::received_at(&msg, 1_800_000_000) {
            prop_assert!(i64::from(t) <= 1_800_000_000);
        }
    }

    #[test]
    fn header_parsers_are_total(text in pieces(), any_text in any::<String>()) {
        // A pinned instant: the parsers' answers must not depend on the day the test runs.
        let pinned = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for t in [&text, &any_text] {
            let r = trust::parse_authentication_results(t);
            prop_assert!(r.results.len() <= t.len());
            let _ = trust::from_address(t);
            let _ = trust::trusted_senders(t);
            let _ = query::check(t);
            let _ = ingest_gmail::api::retry_after_in_message(t, pinned);
        }
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        pieces().prop_map(Value::from),
        "[A-Za-z0-9_-]{0,40}=?=?".prop_map(Value::from),
    ]
}

/// JSON shaped like a `MessagePart` (names the parsers read), with any value anywhere.
fn json_tree() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "partId",
        "mimeType",
        "filename",
        "headers",
        "body",
        "parts",
        "data",
        "attachmentId",
        "size",
        "name",
        "value",
    ]);
    json_leaf().prop_recursive(6, 96, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}
