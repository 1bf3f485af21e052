//! Sales reports as they arrive by mail — CSV (`;` or `,`, UTF-8 or Windows-1251, BOM,
//! decimal comma, thousands separators), XLSX, or an HTML table in the body — with Russian or
//! English column names, into rows. Every data row is either parsed or reported with its
//! number and the reason; none is dropped silently.
//!
//! Mail is written by strangers: every parser here is total (no input makes it panic) and
//! bounded by [`Limits`] (no input makes it take more than a few times the limits in memory,
//! nor more than linear time); what it refuses is an error naming the setting to raise.

use chrono::NaiveDate;

/// How much of a report the parsers take in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of one attachment or body (`GMAIL_MAX_ATTACHMENT_BYTES`); an XLSX may
    /// unpack to [`XLSX_UNPACK_FACTOR`] times as much.
    pub attachment_bytes: usize,
    /// Most cells of a report's table (`GMAIL_MAX_SHEET_CELLS`); for a sheet, the rows ×
    /// columns its cells span.
    pub table_cells: usize,
    /// Most data rows of a report (`GMAIL_MAX_REPORT_ROWS`).
    pub rows: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        attachment_bytes: 10 * 1024 * 1024,
        table_cells: 500_000,
        rows: 10_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// An XLSX (a ZIP) may unpack to this many times `GMAIL_MAX_ATTACHMENT_BYTES`.
pub const XLSX_UNPACK_FACTOR: usize = 8;

/// At most `max` characters of `text`, for messages that quote the input.
fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// One parsed row of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based, counting data rows (the header is row 0).
    pub row_no: u32,
    pub date: NaiveDate,
    pub event: String,
    pub city: String,
    pub tickets_sold: u64,
    /// Kopecks.
    pub revenue: i64,
    /// Kopecks.
    pub refunds: i64,
    pub currency: String,
}

/// A row that could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub row_no: u32,
    pub reason: String,
}

/// What one report gave.
#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: Vec<Row>,
    pub errors: Vec<RowError>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    Date,
    Event,
    City,
    Tickets,
    Revenue,
    Refunds,
    Currency,
}

/// Column names (lower-cased) as Russian and English reports spell them.
const NAMES: &[(&str, Column)] = &[
    ("дата", Column::Date),
    ("дата продажи", Column::Date),
    ("день", Column::Date),
    ("date", Column::Date),
    ("report_date", Column::Date),
    ("событие", Column::Event),
    ("мероприятие", Column::Event),
    ("название", Column::Event),
    ("event", Column::Event),
    ("event_name", Column::Event),
    ("город", Column::City),
    ("city", Column::City),
    ("продано билетов", Column::Tickets),
    ("билетов", Column::Tickets),
    ("билеты", Column::Tickets),
    ("количество", Column::Tickets),
    ("tickets", Column::Tickets),
    ("tickets_sold", Column::Tickets),
    ("выручка", Column::Revenue),
    ("сумма", Column::Revenue),
    ("revenue", Column::Revenue),
    ("amount", Column::Revenue),
    ("возвраты", Column::Refunds),
    ("сумма возвратов", Column::Refunds),
    ("refunds", Column::Refunds),
    ("валюта", Column::Currency),
    ("currency", Column::Currency),
];

const REQUIRED: &[(Column, &str)] = &[
    (Column::Date, "date"),
    (Column::Event, "event"),
    (Column::Tickets, "tickets sold"),
    (Column::Revenue, "revenue"),
];

fn column(name: &str) -> Option<Column> {
    let flat: String = name
        .trim()
        .trim_matches('\u{feff}')
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    NAMES.iter().find(|(n, _)| *n == flat).map(|(_, c)| *c)
}

/// Rows of cells (the first one the header) into report rows.
pub fn from_table(table: &[Vec<String>], limits: &Limits) -> anyhow::Result<Parsed> {
    let Some((header, data)) = table.split_first() else {
        anyhow::bail!("the report is empty");
    };
    let columns: Vec<Option<Column>> = header.iter().map(|h| column(h)).collect();
    for (wanted, name) in REQUIRED {
        anyhow::ensure!(
            columns.contains(&Some(*wanted)),
            "the report has no {name} column (header: {})",
            excerpt(&header.join(" | "), 200)
        );
    }
    let mut parsed = Parsed::default();
    let mut row_no: u32 = 0;
    for cells in data {
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        anyhow::ensure!(
            (row_no as usize) < limits.rows,
            "the report has more than {} rows (`GMAIL_MAX_REPORT_ROWS`)",
            limits.rows
        );
        row_no += 1;
        match row(row_no, &columns, cells) {
            Ok(r) => parsed.rows.push(r),
            Err(reason) => parsed.errors.push(RowError { row_no, reason }),
        }
    }
    Ok(parsed)
}

fn row(row_no: u32, columns: &[Option<Column>], cells: &[String]) -> Result<Row, String> {
    let cell = |wanted: Column| -> Option<&str> {
        columns
            .iter()
            .position(|c| *c == Some(wanted))
            .and_then(|i| cells.get(i))
            .map(|s| s.trim())
    };
    let date_text = cell(Column::Date).unwrap_or_default();
    let date =
        date(date_text).ok_or_else(|| format!("`{}` is not a date", excerpt(date_text, 40)))?;
    let event = cell(Column::Event).unwrap_or_default().to_owned();
    if event.is_empty() {
        return Err("the event is empty".into());
    }
    let tickets_text = cell(Column::Tickets).unwrap_or_default();
    let tickets_sold = count(tickets_text).ok_or_else(|| {
        format!(
            "tickets sold `{}` is not a count",
            excerpt(tickets_text, 40)
        )
    })?;
    let money = |c: Column, what: &str, required: bool| -> Result<i64, String> {
        match cell(c) {
            Some(t) if !t.is_empty() => amount(t).map_err(|e| format!("{what}: {e}")),
            _ if required => Err(format!("{what} is empty")),
            _ => Ok(0),
        }
    };
    Ok(Row {
        row_no,
        date,
        event,
        city: cell(Column::City).unwrap_or_default().to_owned(),
        tickets_sold,
        revenue: money(Column::Revenue, "revenue", true)?,
        refunds: money(Column::Refunds, "refunds", false)?,
        currency: match cell(Column::Currency) {
            Some(c) if !c.is_empty() => c.to_uppercase(),
            _ => "RUB".to_owned(),
        },
    })
}

/// `31.12.2026`, `2026-12-31`, `31/12/2026`, or an Excel day number.
fn date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    for f in ["%d.%m.%Y", "%Y-%m-%d", "%d/%m/%Y", "%Y/%m/%d", "%d.%m.%y"] {
        // `%Y` takes any number of digits (`24.11.26` is the year 26 to it, not 2026), and
        // a date ClickHouse cannot hold would be stored as another one: both are refused.
        if let Ok(d) = NaiveDate::parse_from_str(text, f)
            && zakaz_core::time::fits_ch_date(d)
        {
            return Some(d);
        }
    }
    // An XLSX date cell read as its serial number (days since 1899-12-30).
    let serial: f64 = text.parse().ok()?;
    (20_000.0..80_000.0)
        .contains(&serial)
        .then(|| {
            NaiveDate::from_ymd_opt(1899, 12, 30).expect("epoch") + chrono::Days::new(serial as u64)
        })
        .filter(|d| zakaz_core::time::fits_ch_date(*d))
}

fn strip_spaces(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}' && *c != '\u{202f}' && *c != '\'')
        .collect()
}

/// A whole count: `1 234`, `12`, `12.0` (a spreadsheet's number).
fn count(text: &str) -> Option<u64> {
    let t = strip_spaces(text);
    if let Ok(n) = t.parse::<u64>() {
        return Some(n);
    }
    let f: f64 = t.replace(',', ".").parse().ok()?;
    (f >= 0.0 && f.fract() == 0.0 && f < 1e15).then_some(f as u64)
}

/// An amount in roubles as kopecks: `1 234,50`, `1234.50`, `1,234.50`, `1.234,50`,
/// `12 345 ₽`. With both separators the last one is the decimal one; a lone `,` is a decimal
/// comma; several `.` or `,` are thousands separators.
pub fn amount(text: &str) -> Result<i64, String> {
    let t: String = strip_spaces(text)
        .trim_end_matches(['₽', 'р', 'Р', '.'])
        .trim_end_matches("руб")
        .to_owned();
    let (dots, commas) = (t.matches('.').count(), t.matches(',').count());
    let normal = match (dots, commas) {
        (_, 0) if dots > 1 => t.replace('.', ""),
        (0, _) if commas > 1 => t.replace(',', ""),
        // The last separator is the decimal one (also a lone `,` or `.`).
        _ if t.rfind(',') > t.rfind('.') => t.replace('.', "").replace(',', "."),
        _ => t.replace(',', ""),
    };
    zakaz_core::money::parse_kopecks(&normal)
        .map_err(|_| format!("`{}` is not an amount", excerpt(text, 40)))
}

/// CSV text: the delimiter (`;` or `,`) from the header line, RFC 4180 quotes.
pub fn csv(text: &str, limits: &Limits) -> anyhow::Result<Parsed> {
    let text = text.trim_start_matches('\u{feff}');
    let header = text.lines().next().unwrap_or_default();
    let delimiter = if header.matches(';').count() >= header.matches(',').count() {
        ';'
    } else {
        ','
    };
    from_table(&csv_cells(text, delimiter, limits)?, limits)
}

fn too_many_cells(limits: &Limits) -> anyhow::Error {
    anyhow::anyhow!(
        "the report's table has more than {} cells (`GMAIL_MAX_SHEET_CELLS`)",
        limits.table_cells
    )
}

fn csv_cells(text: &str, delimiter: char, limits: &Limits) -> anyhow::Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut cells = 0usize;
    let mut push = |row: &mut Vec<String>, cell: String| -> anyhow::Result<()> {
        cells += 1;
        if cells > limits.table_cells {
            return Err(too_many_cells(limits));
        }
        row.push(cell);
        Ok(())
    };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if cell.is_empty() => quoted = true,
            c if c == delimiter && !quoted => push(&mut row, std::mem::take(&mut cell))?,
            '\r' if !quoted => {}
            '\n' if !quoted => {
                push(&mut row, std::mem::take(&mut cell))?;
                rows.push(std::mem::take(&mut row));
            }
            c => cell.push(c),
        }
    }
    anyhow::ensure!(!quoted, "the CSV ends inside a quoted field");
    if !cell.is_empty() || !row.is_empty() {
        push(&mut row, cell)?;
        rows.push(row);
    }
    Ok(rows)
}

/// The first sheet of an XLSX workbook, read cell by cell: a sheet's size is what its cells
/// span, refused above `GMAIL_MAX_SHEET_CELLS` before anything of that size is allocated
/// (reading it as a range would allocate rows × columns: 2^34 cells for `A1` and
/// `XFD1048576`). The archive is unpacked once, counting, before calamine reads it (a ZIP
/// bomb), and a panic inside calamine is this workbook's error.
pub fn xlsx(bytes: &[u8], limits: &Limits) -> anyhow::Result<Parsed> {
    anyhow::ensure!(
        bytes.len() <= limits.attachment_bytes,
        "the workbook is {} bytes, more than `GMAIL_MAX_ATTACHMENT_BYTES` ({})",
        bytes.len(),
        limits.attachment_bytes
    );
    unpacked_within(
        bytes,
        limits.attachment_bytes.saturating_mul(XLSX_UNPACK_FACTOR),
    )?;
    let table = crate::guarded("the XLSX reader", || sheet_table(bytes, limits))?;
    from_table(&table, limits)
}

/// Unpack every member of the archive into nothing, counting, and refuse past `limit`.
fn unpacked_within(bytes: &[u8], limit: usize) -> anyhow::Result<()> {
    use std::io::Read;
    let unreadable =
        |e: &dyn std::fmt::Display| anyhow::anyhow!("not a readable XLSX workbook: {e}");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| unreadable(&e))?;
    let mut left = limit as u64;
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(|e| unreadable(&e))?;
        let n = std::io::copy(&mut entry.take(left + 1), &mut std::io::sink())
            .map_err(|e| unreadable(&e))?;
        anyhow::ensure!(
            n <= left,
            "the workbook unpacks to more than {limit} bytes ({XLSX_UNPACK_FACTOR} × `GMAIL_MAX_ATTACHMENT_BYTES`)"
        );
        left -= n;
    }
    Ok(())
}

fn sheet_table(bytes: &[u8], limits: &Limits) -> anyhow::Result<Vec<Vec<String>>> {
    use calamine::{DataRef, Reader};
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes))
        .map_err(|e| anyhow::anyhow!("not a readable XLSX workbook: {e}"))?;
    let name = book
        .sheet_names()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the XLSX workbook has no sheet"))?;
    let unreadable =
        |e: calamine::XlsxError| anyhow::anyhow!("the first sheet cannot be read: {e}");
    let mut reader = book.worksheet_cells_reader(&name).map_err(unreadable)?;
    let mut cells: Vec<((u32, u32), String)> = Vec::new();
    // The span of the cells so far: first and last row, first and last column.
    let mut span: Option<(u32, u32, u32, u32)> = None;
    while let Some(cell) = reader.next_cell().map_err(unreadable)? {
        let text = match cell.get_value() {
            DataRef::Empty => continue,
            DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
            DataRef::SharedString(s) => (*s).to_owned(),
            DataRef::Float(f) => format!("{f}"),
            DataRef::Int(i) => i.to_string(),
            DataRef::Bool(b) => b.to_string(),
            DataRef::DateTime(d) => format!("{}", d.as_f64()),
            DataRef::Error(e) => format!("#ERROR {e:?}"),
        };
        let (r, c) = cell.get_position();
        let (r0, r1, c0, c1) = span.unwrap_or((r, r, c, c));
        let now = (r0.min(r), r1.max(r), c0.min(c), c1.max(c));
        span = Some(now);
        let (rows, columns) = (u64::from(now.1 - now.0) + 1, u64::from(now.3 - now.2) + 1);
        anyhow::ensure!(
            rows.saturating_mul(columns) <= limits.table_cells as u64
                && cells.len() < limits.table_cells,
            "the first sheet spans {rows} rows × {columns} columns (a cell at row {}, column {}), more than `GMAIL_MAX_SHEET_CELLS` ({}) cells",
            u64::from(r) + 1,
            u64::from(c) + 1,
            limits.table_cells
        );
        cells.push(((r, c), text));
    }
    let Some((r0, r1, c0, c1)) = span else {
        return Ok(Vec::new());
    };
    let width = (c1 - c0) as usize + 1;
    let mut table = vec![vec![String::new(); width]; (r1 - r0) as usize + 1];
    for ((r, c), text) in cells {
        table[(r - r0) as usize][(c - c0) as usize] = text;
    }
    Ok(table)
}

/// Where the next tag at or after `from` starts and ends (`<` … `>`), and whether it closes
/// (`</td>`) and its name (`td`), both positions in `text` itself.
fn next_tag(text: &str, from: usize) -> Option<(usize, usize, bool, &str)> {
    let lt = from + text.get(from..)?.find('<')?;
    let gt = lt + text[lt..].find('>')?;
    let inner = &text[lt + 1..gt];
    let closing = inner.starts_with('/');
    let inner = inner.trim_start_matches('/');
    let len = inner.bytes().take_while(u8::is_ascii_alphanumeric).count();
    Some((lt, gt + 1, closing, &inner[..len]))
}

/// The first `<table>` of an HTML body, read in one pass over its tags: every position comes
/// from the text itself (lower-casing can change a text's length: `İ` grows), and the time
/// is linear whatever the markup.
pub fn html(text: &str, limits: &Limits) -> anyhow::Result<Parsed> {
    let mut at = 0;
    loop {
        let (_, end, closing, name) =
            next_tag(text, at).ok_or_else(|| anyhow::anyhow!("the HTML body has no table"))?;
        at = end;
        if !closing && name.eq_ignore_ascii_case("table") {
            break;
        }
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row: Option<Vec<String>> = None;
    let mut cell: Option<String> = None;
    let mut cells = 0usize;
    let mut end_cell = |row: &mut Option<Vec<String>>, cell: &mut Option<String>| {
        let Some(c) = cell.take() else {
            return Ok(());
        };
        cells += 1;
        if cells > limits.table_cells {
            return Err(too_many_cells(limits));
        }
        row.get_or_insert_with(Vec::new).push(cell_text(&c));
        Ok(())
    };
    let end_row = |rows: &mut Vec<Vec<String>>, row: &mut Option<Vec<String>>| {
        if let Some(r) = row.take().filter(|r| !r.is_empty()) {
            rows.push(r);
        }
    };
    loop {
        let tag = next_tag(text, at);
        let text_end = tag.map_or(text.len(), |t| t.0);
        if let Some(c) = cell.as_mut() {
            c.push_str(&text[at..text_end]);
        }
        let Some((_, end, closing, name)) = tag else {
            break;
        };
        at = end;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("table") && closing {
            break;
        } else if is("tr") {
            // A row begins with its first cell (`<tr>` and `</tr>` both end the last one).
            end_cell(&mut row, &mut cell)?;
            end_row(&mut rows, &mut row);
        } else if is("td") || is("th") {
            end_cell(&mut row, &mut cell)?;
            if !closing {
                cell = Some(String::new());
            }
        }
        // Any other tag inside a cell is markup (`<b>`): dropped, its text kept.
    }
    end_cell(&mut row, &mut cell)?;
    end_row(&mut rows, &mut row);
    from_table(&rows, limits)
}

/// A cell's text: entities decoded, whitespace collapsed (tags are already gone).
fn cell_text(text: &str) -> String {
    let decoded = decode_entities(text);
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        // An entity is short: look for its `;` in the next few bytes only (linear time).
        let Some(end) = rest.bytes().take(11).position(|b| b == b';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_every_notation() {
        for (text, kopecks) in [
            ("1 234,50", 123_450),
            ("1234.50", 123_450),
            ("1,234.50", 123_450),
            ("1.234,50", 123_450),
            ("1.234.567", 123_456_700),
            ("12 345 ₽", 1_234_500),
            ("\u{a0}99,9", 9_990),
            ("0", 0),
            ("1234.5", 123_450),
        ] {
            assert_eq!(amount(text), Ok(kopecks), "{text}");
        }
        assert!(amount("много").is_err());
    }

    #[test]
    fn csv_with_semicolons_quotes_bom_and_a_bad_row() {
        let text = "\u{feff}Дата;Событие;Город;Продано билетов;Выручка;Возвраты\n\
                    01.12.2026;\"Концерт; вечер\";Москва;3;1 500,00;0\n\
                    \n\
                    02.12.2026;Спектакль;Казань;много;100,00;\n";
        let parsed = csv(text, &Limits::DEFAULT).unwrap();
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(parsed.rows[0].event, "Концерт; вечер");
        assert_eq!(parsed.rows[0].revenue, 150_000);
        assert_eq!(parsed.rows[0].currency, "RUB");
        assert_eq!(
            parsed.errors,
            vec![RowError {
                row_no: 2,
                reason: "tickets sold `много` is not a count".into()
            }]
        );
        let missing = csv("city;revenue\nМосква;1\n", &Limits::DEFAULT).unwrap_err();
        assert!(missing.to_string().contains("no date column"), "{missing}");
    }

    #[test]
    fn html_tables_with_entities_and_nested_tags() {
        let body = "<p>x</p><TABLE><tr><th>Date</th><th>Event</th><th>Tickets</th><th>Revenue</th></tr>\
                    <tr><td>2026-12-01</td><td><b>Rock &amp; Roll</b></td><td>2</td><td>1&nbsp;000.00</td></tr></TABLE>";
        let parsed = html(body, &Limits::DEFAULT).unwrap();
        assert_eq!(parsed.rows.len(), 1, "{:?}", parsed.errors);
        assert_eq!(parsed.rows[0].event, "Rock & Roll");
        assert_eq!(parsed.rows[0].revenue, 100_000);
    }

    #[test]
    fn html_entities_and_the_cell_limit_exactly() {
        let body = "<table><tr><th>Date</th><th>Event</th><th>Tickets</th><th>Revenue</th></tr>\
                    <tr><td>2026-12-01</td><td>&lt;b&gt; &quot;A&quot; &apos;B&apos; &#x43;&#X44;&#69; &bogus; &#xZZ;</td><td>2</td><td>10</td></tr></table>";
        let exact = Limits {
            table_cells: 8,
            ..Limits::DEFAULT
        };
        let parsed = html(body, &exact).unwrap();
        assert_eq!(parsed.rows[0].event, "<b> \"A\" 'B' CDE &bogus; &#xZZ;");
        let over = Limits {
            table_cells: 7,
            ..Limits::DEFAULT
        };
        assert!(html(body, &over).is_err());
    }

    #[test]
    fn html_positions_come_from_the_text_itself() {
        // `İ` is two bytes, its lower case three: a table after it parses as it is.
        let body = "<p>Отчёт İstanbul</p><table><tr><th>Дата</th><th>Событие</th><th>Город</th><th>Продано билетов</th><th>Выручка</th></tr>\
                    <tr><td>24.11.2026</td><td>Концерт İ</td><td>Стамбул</td><td>3</td><td>1 500,00</td></tr></table>";
        let parsed = html(body, &Limits::DEFAULT).unwrap();
        assert_eq!(parsed.errors, []);
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(parsed.rows[0].event, "Концерт İ");
        assert_eq!(parsed.rows[0].city, "Стамбул");
        assert_eq!(parsed.rows[0].revenue, 150_000);
        // Rows without cells, unclosed tags, a body without a table.
        assert!(html("<table><tr><tr><tr><tr>", &Limits::DEFAULT).is_err());
        assert!(html("<table><tr><td>Дата<td", &Limits::DEFAULT).is_err());
        assert_eq!(
            html("<p>no table</p>", &Limits::DEFAULT)
                .unwrap_err()
                .to_string(),
            "the HTML body has no table"
        );
    }

    #[test]
    fn tables_and_rows_are_bounded_by_the_limits() {
        let limits = Limits {
            attachment_bytes: 100_000,
            table_cells: 50,
            rows: 3,
        };
        let header = "Дата;Событие;Продано билетов;Выручка\n";
        let row = "24.11.2026;Концерт;1;100\n";
        assert_eq!(
            csv(&format!("{header}{}", row.repeat(3)), &limits)
                .unwrap()
                .rows
                .len(),
            3
        );
        let long = csv(&format!("{header}{}", row.repeat(4)), &limits).unwrap_err();
        assert_eq!(
            long.to_string(),
            "the report has more than 3 rows (`GMAIL_MAX_REPORT_ROWS`)"
        );
        let wide = csv(&";".repeat(1_000_000), &limits).unwrap_err();
        assert!(
            wide.to_string()
                .contains("more than 50 cells (`GMAIL_MAX_SHEET_CELLS`)"),
            "{wide}"
        );
        let cells = html(&format!("<table>{}", "<td>x".repeat(1_000)), &limits).unwrap_err();
        assert!(
            cells.to_string().contains("`GMAIL_MAX_SHEET_CELLS`"),
            "{cells}"
        );
        // A quoted cell is echoed short, whatever its length.
        let bad = csv(
            &format!("{header}{};Концерт;1;100\n", "9".repeat(10_000)),
            &limits,
        )
        .unwrap();
        assert!(
            bad.errors[0].reason.chars().count() < 60,
            "{:?}",
            bad.errors
        );
        // 100 000 cells of one row, each an `&` without a `;`: refused by the cell limit
        // (the time it takes is the benchmarks' business, not a test's).
        let e = html(&format!("<table><tr>{}", "<td>&".repeat(100_000)), &limits).unwrap_err();
        assert!(e.to_string().contains("`GMAIL_MAX_SHEET_CELLS`"), "{e}");
        // Exactly at the limits is still a report.
        let exact = Limits {
            table_cells: 16,
            ..limits
        };
        assert_eq!(
            csv(&format!("{header}{}", row.repeat(3)), &exact)
                .unwrap()
                .rows
                .len(),
            3
        );
        let over = Limits {
            table_cells: 15,
            ..limits
        };
        assert!(csv(&format!("{header}{}", row.repeat(3)), &over).is_err());
    }

    #[test]
    fn counts_dates_and_amounts_in_the_forms_spreadsheets_write() {
        for (text, n) in [
            ("1 234", Some(1_234)),
            ("1\u{a0}234", Some(1_234)),
            ("1\u{202f}234", Some(1_234)),
            ("1'234", Some(1_234)),
            ("12.0", Some(12)),
            ("12,0", Some(12)),
            ("0.0", Some(0)),
            ("1e14", Some(100_000_000_000_000)),
            ("1e15", None),
            ("1.5", None),
            ("-1.0", None),
            ("", None),
        ] {
            assert_eq!(count(text), n, "{text:?}");
        }
        for (text, kopecks) in [
            ("1'234,50", 123_450),
            ("1,234,567", 123_456_700),
            ("1.234.567,89", 123_456_789),
            ("1,234,567.89", 123_456_789),
            ("99,9", 9_990),
            ("12 345 руб", 1_234_500),
        ] {
            assert_eq!(amount(text), Ok(kopecks), "{text}");
        }
        let epoch = NaiveDate::from_ymd_opt(1899, 12, 30).unwrap();
        assert_eq!(
            date("46000"),
            epoch.checked_add_days(chrono::Days::new(46_000))
        );
        assert_eq!(date("46000"), NaiveDate::from_ymd_opt(2025, 12, 9));
        assert_eq!(date("19999"), None);
        // A two-digit year is this century's, never the year 26.
        assert_eq!(date("24.11.26"), NaiveDate::from_ymd_opt(2026, 11, 24));
        assert_eq!(date("0026-11-24"), None);
        // Outside what ClickHouse's Date holds: not a date, never another one.
        assert_eq!(date("31.12.1969"), None);
        assert_eq!(date("25000"), None, "1968-06-12");
        assert_eq!(date("2149-06-07"), None);
        assert_eq!(date("2149-06-06"), NaiveDate::from_ymd_opt(2149, 6, 6));
        assert_eq!(date("01.01.1970"), NaiveDate::from_ymd_opt(1970, 1, 1));
    }

    #[test]
    fn empty_cells_are_refused_or_defaulted_column_by_column() {
        let text = "Дата;Событие;Продано билетов;Выручка;Возвраты;Валюта\n\
                    01.12.2026;A;1;100;;\n\
                    01.12.2026;B;1;100;5;eur\n\
                    01.12.2026;C;1;;5;RUB\n";
        let parsed = csv(text, &Limits::DEFAULT).unwrap();
        assert_eq!(parsed.rows.len(), 2, "{:?}", parsed.errors);
        assert_eq!(
            (parsed.rows[0].refunds, parsed.rows[0].currency.as_str()),
            (0, "RUB")
        );
        assert_eq!(
            (parsed.rows[1].refunds, parsed.rows[1].currency.as_str()),
            (500, "EUR")
        );
        assert_eq!(
            parsed.errors,
            vec![RowError {
                row_no: 3,
                reason: "revenue is empty".into()
            }]
        );
    }

    #[test]
    fn csv_cells_follow_rfc_4180() {
        let cells = |t: &str| csv_cells(t, ';', &Limits::DEFAULT).unwrap();
        let v = |rows: &[&[&str]]| -> Vec<Vec<String>> {
            rows.iter()
                .map(|r| r.iter().map(|c| c.to_string()).collect())
                .collect()
        };
        assert_eq!(cells("a;b\r\nc;d\r\n"), v(&[&["a", "b"], &["c", "d"]]));
        assert_eq!(cells("a;b\n"), v(&[&["a", "b"]]));
        assert_eq!(cells("h\nx"), v(&[&["h"], &["x"]]));
        assert_eq!(cells("h\nx;"), v(&[&["h"], &["x", ""]]));
        assert_eq!(
            cells("\"a \"\"b\"\" c\";\"x\r\ny\";12\" vinyl\n"),
            v(&[&["a \"b\" c", "x\r\ny", "12\" vinyl"]])
        );
        assert!(csv_cells("\"open", ';', &Limits::DEFAULT).is_err());
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in files {
            zip.start_file(*name, options).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn xlsx_is_refused_past_its_limits_before_calamine_reads_it() {
        let limits = Limits {
            attachment_bytes: 64 * 1024,
            table_cells: 1_000,
            rows: 10,
        };
        // 8 MB of shared strings in a few KB: more than 8 × 64 KiB unpacked.
        let strings = vec![b'a'; 8 << 20];
        let bomb = zip_of(&[("xl/sharedStrings.xml", &strings)]);
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        let e = xlsx(&bomb, &limits).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the workbook unpacks to more than 524288 bytes (8 × `GMAIL_MAX_ATTACHMENT_BYTES`)"
        );
        let e = xlsx(&vec![0; 65 * 1024], &limits).unwrap_err();
        assert!(
            e.to_string()
                .contains("more than `GMAIL_MAX_ATTACHMENT_BYTES`"),
            "{e}"
        );
        // Cells far apart: refused by their span, without allocating it.
        let cells = |refs: &[&str]| -> Vec<(String, String)> {
            refs.iter()
                .map(|r| (r.to_string(), "1".to_string()))
                .collect()
        };
        let far =
            api_sandbox::gmail::xlsx_cells(&cells(&["A1", "XFD1048576"]), Some("A1:XFD1048576"));
        let e = xlsx(&far, &limits).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the first sheet spans 1048576 rows × 16384 columns"),
            "{e}"
        );
        // A sheet whose data starts at C3 is read from there, as a range would be.
        let sheet = api_sandbox::gmail::xlsx_cells(
            &[
                ("C3".into(), "date".into()),
                ("D3".into(), "event".into()),
                ("E3".into(), "tickets".into()),
                ("F3".into(), "revenue".into()),
                ("C4".into(), "2026-11-24".into()),
                ("D4".into(), "Концерт".into()),
                ("E4".into(), "2".into()),
                ("F4".into(), "10.50".into()),
            ],
            Some("A1:XFD1048576"),
        );
        let parsed = xlsx(&sheet, &limits).unwrap();
        assert_eq!(parsed.errors, []);
        assert_eq!(parsed.rows[0].revenue, 1_050);
        // The table is the cells' span, no row or column more.
        assert_eq!(
            sheet_table(&sheet, &limits).unwrap(),
            [
                ["date", "event", "tickets", "revenue"],
                ["2026-11-24", "Концерт", "2", "10.50"],
            ]
        );
        // Its 2 rows × 4 columns are 8 cells, wherever they start: 8 is enough.
        let eight = Limits {
            table_cells: 8,
            ..limits
        };
        assert_eq!(xlsx(&sheet, &eight).unwrap().rows.len(), 1);
        let seven = Limits {
            table_cells: 7,
            ..limits
        };
        assert!(xlsx(&sheet, &seven).is_err());
    }

    #[test]
    fn the_default_limits_are_the_documented_ones() {
        let reference = include_str!("../../../docs/configuration.md");
        for (setting, value) in [
            (
                "GMAIL_MAX_ATTACHMENT_BYTES",
                Limits::DEFAULT.attachment_bytes,
            ),
            ("GMAIL_MAX_SHEET_CELLS", Limits::DEFAULT.table_cells),
            ("GMAIL_MAX_REPORT_ROWS", Limits::DEFAULT.rows),
        ] {
            let line = reference
                .lines()
                .find(|l| l.starts_with(&format!("| `{setting}` |")))
                .unwrap_or_else(|| panic!("{setting} is not in docs/configuration.md"));
            assert!(
                line.contains(&format!("| `{value}` |")),
                "{setting}: {line}"
            );
        }
    }

    #[test]
    fn the_unpacking_limit_is_for_all_members_together() {
        let half = vec![b'a'; 300 * 1024];
        let two = zip_of(&[("a.xml", &half), ("b.xml", &half)]);
        let e = unpacked_within(&two, 512 * 1024).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the workbook unpacks to more than 524288 bytes"),
            "{e}"
        );
        unpacked_within(&two, 600 * 1024).unwrap();
    }
}
