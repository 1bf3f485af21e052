//! Sales reports as they arrive by mail — CSV (`;` or `,`, UTF-8 or Windows-1251, BOM,
//! decimal comma, thousands separators), XLSX, or an HTML table in the body — with Russian or
//! English column names, into rows. Every data row is either parsed or reported with its
//! number and the reason; none is dropped silently.

use chrono::NaiveDate;

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
pub fn from_table(table: &[Vec<String>]) -> anyhow::Result<Parsed> {
    let Some((header, data)) = table.split_first() else {
        anyhow::bail!("the report is empty");
    };
    let columns: Vec<Option<Column>> = header.iter().map(|h| column(h)).collect();
    for (wanted, name) in REQUIRED {
        anyhow::ensure!(
            columns.contains(&Some(*wanted)),
            "the report has no {name} column (header: {})",
            header.join(" | ")
        );
    }
    let mut parsed = Parsed::default();
    let mut row_no = 0;
    for cells in data {
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
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
    let date = date(date_text).ok_or_else(|| format!("`{date_text}` is not a date"))?;
    let event = cell(Column::Event).unwrap_or_default().to_owned();
    if event.is_empty() {
        return Err("the event is empty".into());
    }
    let tickets_text = cell(Column::Tickets).unwrap_or_default();
    let tickets_sold = count(tickets_text)
        .ok_or_else(|| format!("tickets sold `{tickets_text}` is not a count"))?;
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
        if let Ok(d) = NaiveDate::parse_from_str(text, f) {
            return Some(d);
        }
    }
    // An XLSX date cell read as its serial number (days since 1899-12-30).
    let serial: f64 = text.parse().ok()?;
    (20_000.0..80_000.0).contains(&serial).then(|| {
        NaiveDate::from_ymd_opt(1899, 12, 30).expect("epoch") + chrono::Days::new(serial as u64)
    })
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
        (0, 1) => t.replace(',', "."),
        (d, c) if d > 0 && c > 0 => {
            if t.rfind(',') > t.rfind('.') {
                t.replace('.', "").replace(',', ".")
            } else {
                t.replace(',', "")
            }
        }
        _ => t.clone(),
    };
    zakaz_core::money::parse_kopecks(&normal).map_err(|_| format!("`{text}` is not an amount"))
}

/// CSV text: the delimiter (`;` or `,`) from the header line, RFC 4180 quotes.
pub fn csv(text: &str) -> anyhow::Result<Parsed> {
    let text = text.trim_start_matches('\u{feff}');
    let header = text.lines().next().unwrap_or_default();
    let delimiter = if header.matches(';').count() >= header.matches(',').count() {
        ';'
    } else {
        ','
    };
    from_table(&csv_cells(text, delimiter)?)
}

fn csv_cells(text: &str, delimiter: char) -> anyhow::Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if cell.is_empty() => quoted = true,
            c if c == delimiter && !quoted => row.push(std::mem::take(&mut cell)),
            '\r' if !quoted => {}
            '\n' if !quoted => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            c => cell.push(c),
        }
    }
    anyhow::ensure!(!quoted, "the CSV ends inside a quoted field");
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    Ok(rows)
}

/// The first sheet of an XLSX workbook.
pub fn xlsx(bytes: &[u8]) -> anyhow::Result<Parsed> {
    use calamine::{Data, Reader};
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes))
        .map_err(|e| anyhow::anyhow!("not a readable XLSX workbook: {e}"))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| anyhow::anyhow!("the XLSX workbook has no sheet"))?
        .map_err(|e| anyhow::anyhow!("the first sheet cannot be read: {e}"))?;
    let table: Vec<Vec<String>> = range
        .rows()
        .map(|cells| {
            cells
                .iter()
                .map(|c| match c {
                    Data::Empty => String::new(),
                    Data::String(s) => s.clone(),
                    Data::Float(f) => format!("{f}"),
                    Data::Int(i) => i.to_string(),
                    Data::Bool(b) => b.to_string(),
                    Data::DateTime(d) => format!("{}", d.as_f64()),
                    Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
                    Data::Error(e) => format!("#ERROR {e:?}"),
                })
                .collect()
        })
        .collect();
    from_table(&table)
}

/// The first `<table>` of an HTML body.
pub fn html(text: &str) -> anyhow::Result<Parsed> {
    let lower = text.to_lowercase();
    let start = lower
        .find("<table")
        .ok_or_else(|| anyhow::anyhow!("the HTML body has no table"))?;
    let end = lower[start..]
        .find("</table")
        .map_or(lower.len(), |e| start + e);
    let (table, table_lower) = (&text[start..end], &lower[start..end]);
    let mut rows = Vec::new();
    for (row_start, _) in table_lower.match_indices("<tr") {
        let row_end = table_lower[row_start + 3..]
            .find("<tr")
            .map_or(table.len(), |e| row_start + 3 + e);
        let (row, row_lower) = (&table[row_start..row_end], &table_lower[row_start..row_end]);
        let mut cells = Vec::new();
        let mut at = 0;
        while let Some(open) = ["<td", "<th"]
            .iter()
            .filter_map(|t| row_lower[at..].find(t).map(|i| at + i))
            .min()
        {
            let content_start = row_lower[open..]
                .find('>')
                .map_or(row.len(), |i| open + i + 1);
            let content_end = ["</td", "</th", "<td", "<th", "</tr"]
                .iter()
                .filter_map(|t| {
                    row_lower[content_start..]
                        .find(t)
                        .map(|i| content_start + i)
                })
                .min()
                .unwrap_or(row.len());
            cells.push(cell_text(&row[content_start..content_end]));
            at = content_end;
        }
        if !cells.is_empty() {
            rows.push(cells);
        }
    }
    from_table(&rows)
}

/// A cell's text: tags removed, entities decoded, whitespace collapsed.
fn cell_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = decode_entities(&out);
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
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
        let parsed = csv(text).unwrap();
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
        let missing = csv("city;revenue\nМосква;1\n").unwrap_err();
        assert!(missing.to_string().contains("no date column"), "{missing}");
    }

    #[test]
    fn html_tables_with_entities_and_nested_tags() {
        let body = "<p>x</p><TABLE><tr><th>Date</th><th>Event</th><th>Tickets</th><th>Revenue</th></tr>\
                    <tr><td>2026-12-01</td><td><b>Rock &amp; Roll</b></td><td>2</td><td>1&nbsp;000.00</td></tr></TABLE>";
        let parsed = html(body).unwrap();
        assert_eq!(parsed.rows.len(), 1, "{:?}", parsed.errors);
        assert_eq!(parsed.rows[0].event, "Rock & Roll");
        assert_eq!(parsed.rows[0].revenue, 100_000);
    }
}
