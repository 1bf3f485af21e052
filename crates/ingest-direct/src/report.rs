//! The TSV of a Direct report, parsed line by line as it streams in: the title line and the
//! `Total rows: N` summary are skipped (and the count checked) whether or not the server
//! honoured the `skip*` headers; columns are found by the header line's names; `--` is a
//! missing value. A parser that expects the summary ([`Parser::expecting_summary`]) refuses
//! an answer without it: the summary is the last line, so a cut answer lacks it.

use chrono::NaiveDate;

/// The fields a report asks for, in request order.
pub const FIELDS: &[&str] = &[
    "Date",
    "CampaignId",
    "CampaignName",
    "AdGroupId",
    "AdGroupName",
    "AdId",
    "Impressions",
    "Clicks",
    "Cost",
    "Conversions",
];

/// The longest report line read.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// One data line, borrowing its text from the parser.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow<'a> {
    pub date: NaiveDate,
    pub campaign_id: u64,
    pub campaign_name: &'a str,
    pub ad_group_id: u64,
    pub ad_group_name: &'a str,
    pub ad_id: u64,
    pub impressions: u64,
    pub clicks: u64,
    /// Kopecks.
    pub cost: i64,
    /// `None` where the report says `--` (a campaign without goals).
    pub conversions: Option<u64>,
    /// The report hides the ad (`--` for `AdId` or `AdGroupId`, as for Campaign Wizard
    /// campaigns): several such rows of a campaign and day are different ads.
    pub ad_hidden: bool,
}

/// Splits a byte stream into lines and lines into rows, without a copy of a row's text:
/// [`Parser::feed`] a chunk, then take its rows with [`Parser::next_row`] until `None`; at
/// the end of the stream [`Parser::end`], the last rows, and [`Parser::finish`].
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes received and not yet parsed, from `pos`.
    buf: Vec<u8>,
    pos: usize,
    ended: bool,
    state: State,
    pub rows: u64,
    pub bytes: u64,
    /// The summary's `Total rows: N`, when the server sent one.
    pub total: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// For each column of the report, which of [`FIELDS`] it holds, once the header line (or
    /// the first data line, when the header was skipped) is seen.
    fields_of_columns: Option<Vec<Option<usize>>>,
    line_no: u64,
    summary_required: bool,
    /// The last date cell and its date: a report holds few dates, in runs.
    last_date: Option<([u8; 10], NaiveDate)>,
}

impl Parser {
    /// A parser for an answer asked with its summary line (`skipReportSummary: false`).
    pub fn expecting_summary() -> Parser {
        Parser {
            state: State {
                summary_required: true,
                ..State::default()
            },
            ..Parser::default()
        }
    }

    /// Take a chunk of the stream; its complete lines are then read by [`Parser::next_row`].
    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The stream has ended: a last line without `\n` is a line too.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// The next row of the lines received (title, header, blank and summary lines are
    /// read and passed over); `None` when no complete line is left.
    pub fn next_row(&mut self) -> anyhow::Result<Option<ReportRow<'_>>> {
        loop {
            let rest = &self.buf[self.pos..];
            // memchr: the line scan was a quarter of the parse, byte by byte.
            let (line, used) = match memchr::memchr(b'\n', rest) {
                Some(n) => (&rest[..n], n + 1),
                None if self.ended && !rest.is_empty() => (rest, rest.len()),
                None => {
                    // A report line is a few hundred bytes; a stream without newlines is no
                    // report.
                    anyhow::ensure!(
                        rest.len() <= MAX_LINE_BYTES,
                        "report line {} is longer than {} KiB: the answer is not a TSV report",
                        self.state.line_no + 1,
                        MAX_LINE_BYTES / 1024
                    );
                    return Ok(None);
                }
            };
            let start = self.pos;
            self.pos += used;
            let line = &self.buf[start..start + line.len()];
            match self.state.line(line, &mut self.total)? {
                Some(row) => {
                    self.rows += 1;
                    return Ok(Some(row));
                }
                None => continue,
            }
        }
    }

    /// After the last row: the summary check.
    pub fn finish(&self) -> anyhow::Result<()> {
        match self.total {
            Some(total) if total != self.rows => anyhow::bail!(
                "the report says `Total rows: {total}` but {} rows arrived: the answer was cut off",
                self.rows
            ),
            None if self.state.summary_required => anyhow::bail!(
                "the report ended after {} rows without its `Total rows` line: the answer was cut off",
                self.rows
            ),
            _ => Ok(()),
        }
    }
}

impl State {
    fn line<'a>(
        &mut self,
        raw: &'a [u8],
        total: &mut Option<u64>,
    ) -> anyhow::Result<Option<ReportRow<'a>>> {
        self.line_no += 1;
        let text = std::str::from_utf8(raw)
            .map_err(|_| anyhow::anyhow!("report line {} is not UTF-8", self.line_no))?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.is_empty() {
            return Ok(None);
        }
        if let Some(n) = text.strip_prefix("Total rows:") {
            *total = Some(
                n.trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("report summary `{text}` has no row count"))?,
            );
            return Ok(None);
        }
        if self.fields_of_columns.is_none() {
            let cells: Vec<&str> = text.split('\t').collect();
            if cells.contains(&"Date") && cells.contains(&"AdId") {
                let mut fields_of_columns = vec![None; cells.len()];
                for (field, name) in FIELDS.iter().enumerate() {
                    let column = cells.iter().position(|c| c == name).ok_or_else(|| {
                        anyhow::anyhow!("the report's header line lacks column `{name}`: {text}")
                    })?;
                    fields_of_columns[column] = Some(field);
                }
                self.fields_of_columns = Some(fields_of_columns);
                return Ok(None);
            }
            // No header line (skipped): a data line is in request order; anything else
            // before the header is the title.
            if cells.len() != FIELDS.len()
                || NaiveDate::parse_from_str(cells[0], "%Y-%m-%d").is_err()
            {
                return Ok(None);
            }
            self.fields_of_columns = Some((0..FIELDS.len()).map(Some).collect());
        }
        let fields_of_columns = self.fields_of_columns.as_ref().expect("set above");
        // Each field's cell; a missing cell is empty.
        let mut cells = [""; FIELDS.len()];
        // Cells end at each tab (found by memchr: `split` searched cell by cell) and at the end.
        let ends = memchr::memchr_iter(b'\t', text.as_bytes()).chain([text.len()]);
        let mut start = 0;
        for (column, end) in ends.enumerate() {
            if let Some(Some(field)) = fields_of_columns.get(column) {
                cells[*field] = &text[start..end];
            }
            start = end + 1;
        }
        let line_no = self.line_no;
        let at = |what: &str, e: String| anyhow::anyhow!("report line {line_no}: `{what}`: {e}");
        let count = |i: usize| -> anyhow::Result<u64> {
            match cells[i].trim() {
                "--" | "" => Ok(0),
                v => v
                    .parse()
                    .map_err(|_| at(FIELDS[i], format!("`{v}` is not a count"))),
            }
        };
        let date = self
            .date(cells[0])
            .ok_or_else(|| at("Date", format!("`{}` is not a date", cells[0])))?;
        let cost = match cells[8].trim() {
            "--" | "" => 0,
            v => zakaz_core::money::parse_kopecks(v).map_err(|e| at("Cost", e))?,
        };
        // `--` (or nothing) where an id should be: an ad the report does not show.
        let hidden = |i: usize| matches!(cells[i].trim(), "--" | "");
        let ad_hidden = hidden(3) || hidden(5);
        let conversions = match cells[9].trim() {
            "--" | "" => None,
            v => Some(
                v.parse()
                    .map_err(|_| at("Conversions", format!("`{v}` is not a count")))?,
            ),
        };
        Ok(Some(ReportRow {
            date,
            campaign_id: count(1)?,
            campaign_name: cells[2],
            ad_group_id: count(3)?,
            ad_group_name: if hidden(4) { "" } else { cells[4] },
            ad_id: count(5)?,
            impressions: count(6)?,
            clicks: count(7)?,
            cost,
            conversions,
            ad_hidden,
        }))
    }

    /// A `YYYY-MM-DD` cell's date; the last one is remembered, as rows come in runs of a date.
    fn date(&mut self, cell: &str) -> Option<NaiveDate> {
        let Ok(bytes) = <[u8; 10]>::try_from(cell.as_bytes()) else {
            return NaiveDate::parse_from_str(cell, "%Y-%m-%d").ok();
        };
        if let Some((last, date)) = self.last_date
            && last == bytes
        {
            return Some(date);
        }
        let date = NaiveDate::parse_from_str(cell, "%Y-%m-%d").ok()?;
        self.last_date = Some((bytes, date));
        Some(date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of a stream given in chunks, its text copied out (leaked: tests only).
    fn parse_with(mut p: Parser, chunks: &[&[u8]]) -> anyhow::Result<Vec<ReportRow<'static>>> {
        let mut rows = Vec::new();
        let own = |r: ReportRow<'_>| ReportRow {
            campaign_name: String::leak(r.campaign_name.to_owned()),
            ad_group_name: String::leak(r.ad_group_name.to_owned()),
            ..r
        };
        for c in chunks {
            p.feed(c);
            while let Some(r) = p.next_row()? {
                rows.push(own(r));
            }
        }
        p.end();
        while let Some(r) = p.next_row()? {
            rows.push(own(r));
        }
        p.finish()?;
        Ok(rows)
    }

    fn parse(chunks: &[&str]) -> anyhow::Result<Vec<ReportRow<'static>>> {
        let chunks: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
        parse_with(Parser::default(), &chunks)
    }

    const HEADER: &str = "Date\tCampaignId\tCampaignName\tAdGroupId\tAdGroupName\tAdId\tImpressions\tClicks\tCost\tConversions\n";

    #[test]
    fn title_header_rows_and_summary_in_any_chunking() {
        let text = format!(
            "\"r (2026-11-20 - 2026-11-20)\"\n{HEADER}2026-11-20\t5\tПоиск msk\t50\tГ\t500\t100\t3\t12.50\t--\n2026-11-20\t5\tПоиск msk\t50\tГ\t501\t7\t0\t0\t2\nTotal rows: 2\n"
        );
        for split in [1, 7, 50, text.len()] {
            let chunks: Vec<String> = text
                .as_bytes()
                .chunks(split)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            // Chunks split inside a multi-byte letter too: join the bytes, not the text.
            let pieces: Vec<&[u8]> = text.as_bytes().chunks(split).collect();
            let rows = parse_with(Parser::default(), &pieces).unwrap();
            assert_eq!(rows.len(), 2, "split {split} ({} chunks)", chunks.len());
            assert_eq!(rows[0].cost, 1250);
            assert_eq!(rows[0].conversions, None);
            assert_eq!(rows[1].conversions, Some(2));
            assert_eq!(rows[0].campaign_name, "Поиск msk");
        }
    }

    #[test]
    fn each_row_has_its_own_date_whatever_the_order() {
        let dates = [
            "2026-11-20",
            "2026-11-20",
            "2026-11-21",
            "2026-11-20",
            "2026-11-23",
        ];
        let text: String = dates
            .iter()
            .map(|d| format!("{d}\t5\tc\t50\tg\t500\t1\t1\t1.00\t0\n"))
            .collect();
        let rows = parse(&[HEADER, &text]).unwrap();
        let got: Vec<String> = rows.iter().map(|r| r.date.to_string()).collect();
        assert_eq!(got, dates);
    }

    #[test]
    fn lines_read_are_let_go_so_the_buffer_holds_about_one_chunk() {
        let line = "2026-11-20\t5\tc\t50\tg\t500\t1\t1\t1.00\t0\n";
        let mut p = Parser::default();
        p.feed(HEADER.as_bytes());
        for _ in 0..10_000 {
            p.feed(line.as_bytes());
            while p.next_row().unwrap().is_some() {}
        }
        assert_eq!(p.rows, 10_000);
        assert!(p.buf.len() <= 2 * line.len(), "{} bytes kept", p.buf.len());
    }

    #[test]
    fn without_header_or_summary_and_a_cut_off_answer() {
        let rows = parse(&["2026-11-20\t5\tc\t50\tg\t500\t1\t1\t1.00\t0"]).unwrap();
        assert_eq!(rows.len(), 1);
        let err = parse(&[
            HEADER,
            "2026-11-20\t5\tc\t50\tg\t500\t1\t1\t1.00\t0\nTotal rows: 3\n",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("cut off"), "{err}");
        let bad = parse(&[HEADER, "2026-11-20\t5\tc\t50\tg\t500\tmany\t1\t1.00\t0\n"]).unwrap_err();
        assert!(bad.to_string().contains("`Impressions`"), "{bad}");
    }

    #[test]
    fn a_parser_expecting_the_summary_refuses_an_answer_without_it() {
        let run = |text: &str| {
            parse_with(Parser::expecting_summary(), &[text.as_bytes()]).map(|rows| rows.len())
        };
        let line = "2026-11-20\t5\tc\t50\tg\t500\t1\t1\t1.00\t0\n";
        assert_eq!(
            run(&format!("{HEADER}{line}{line}Total rows: 2\n")).unwrap(),
            2
        );
        let cut = run(&format!("{HEADER}{line}{line}")).unwrap_err();
        assert!(
            cut.to_string().contains("without its `Total rows` line"),
            "{cut}"
        );
        // Nothing at all is cut off too.
        assert!(run("").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Any bytes, cut into chunks anywhere: rows, or an error naming the line, never a
        /// panic; and no more rows than lines.
        #[test]
        fn the_parser_is_total_over_any_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(0usize..2000, 0..6),
            lines in proptest::collection::vec(
                "(--|[0-9]{0,12}|20[0-9]{2}-[0-9]{2}-[0-9]{2}|Total rows: [0-9]{0,4}|[^\t\n]{0,8})(\t(--|[0-9.]{0,9}|[^\t\n]{0,6})){0,11}",
                0..20,
            ),
        ) {
            for text in [bytes, format!("{HEADER}{}", lines.join("\n")).into_bytes()] {
                let mut p = Parser::expecting_summary();
                let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
                cuts.sort_unstable();
                let mut start = 0;
                let mut rows = 0u64;
                let mut ok = true;
                for cut in cuts.into_iter().chain([text.len()]) {
                    p.feed(&text[start..cut]);
                    while ok {
                        match p.next_row() {
                            Ok(Some(_)) => rows += 1,
                            Ok(None) => break,
                            Err(_) => ok = false,
                        }
                    }
                    start = cut;
                }
                p.end();
                while ok {
                    match p.next_row() {
                        Ok(Some(_)) => rows += 1,
                        Ok(None) => break,
                        Err(_) => ok = false,
                    }
                }
                if ok {
                    let _ = p.finish();
                }
                let newlines = text.iter().filter(|b| **b == b'\n').count() as u64;
                proptest::prop_assert!(rows <= newlines + 1);
            }
        }
    }

    #[test]
    fn hidden_ids_are_flagged_and_their_names_empty() {
        let rows = parse(&[
            HEADER,
            "2026-11-20\t5\tWizard\t--\t--\t--\t10\t1\t1.00\t--\n2026-11-20\t5\tWizard\t--\t--\t--\t20\t2\t2.00\t1\n2026-11-20\t6\tc\t60\tg\t600\t1\t1\t1.00\t0\n",
        ])
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows[0].ad_hidden && rows[1].ad_hidden && !rows[2].ad_hidden);
        assert_eq!((rows[0].ad_id, rows[0].ad_group_name), (0, ""));
        assert_eq!(rows[2].ad_group_name, "g");
        // Either id hidden hides the ad: a group shown with its ad hidden too.
        let rows = parse(&[HEADER, "2026-11-20\t5\tc\t50\tg\t--\t1\t1\t1.00\t0\n"]).unwrap();
        assert!(rows[0].ad_hidden);
        assert_eq!(rows[0].ad_group_name, "g");
    }

    #[test]
    fn lines_before_the_header_are_title_whatever_their_cells() {
        // A title cell `Date` without `AdId` is no header; without a header, a line is data
        // only with every column and a date first.
        let rows = parse(&[
            "Date\ttitle\n",
            "2026-11-20\ta title that starts with a date\n",
            "x\t1\t2\t3\t4\t5\t6\t7\t8\t9\n",
            "2026-11-20\t5\tc\t50\tg\t500\t1\t1\t1.00\t0\n",
        ])
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].ad_id, 500);
    }

    #[test]
    fn a_long_line_is_read_whole() {
        // Far longer than a real line (names are a few hundred characters at most): the bound
        // is there against an answer without line ends, not against data.
        let name = "x".repeat(100_000);
        let line = format!("2026-11-20\t5\t{name}\t50\tg\t500\t1\t1\t1.00\t0\n");
        // In network-sized pieces: the bound is on what is carried from chunk to chunk.
        let pieces: Vec<&str> = line
            .as_bytes()
            .chunks(16 * 1024)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let rows = parse(&[&[HEADER], pieces.as_slice()].concat()).unwrap();
        assert_eq!(rows[0].campaign_name, name);
    }

    #[test]
    fn errors_name_the_line_and_every_byte_is_counted() {
        let mut p = Parser::default();
        let chunks = [
            HEADER,
            "2026-11-20\t5\tc\t50\tg\t500\t1\t1\t1.00\t0\n",
            "2026-11-20\t5\tc\t50\tg\t500\tmany\t1\t1.00\t0\n",
        ];
        let mut result = Ok(None);
        for c in chunks {
            p.feed(c.as_bytes());
            result = (|| {
                while p.next_row()?.is_some() {}
                anyhow::Ok(None::<()>)
            })();
        }
        let err = result.unwrap_err().to_string();
        assert!(err.starts_with("report line 3:"), "{err}");
        assert_eq!(p.bytes, chunks.iter().map(|c| c.len() as u64).sum::<u64>());
    }

    #[test]
    fn a_stream_without_line_ends_is_refused_once_past_the_bound() {
        let mut p = Parser::default();
        let piece = vec![b'x'; 64 * 1024];
        let mut fed = 0;
        let err = loop {
            p.feed(&piece);
            fed += piece.len();
            match p.next_row() {
                Err(e) => break e,
                Ok(row) => assert!(row.is_none()),
            }
            assert!(fed <= 2 * MAX_LINE_BYTES, "no error after {fed} bytes");
        };
        assert!(
            err.to_string()
                .starts_with("report line 1 is longer than 1024 KiB"),
            "{err}"
        );
        assert!(fed <= MAX_LINE_BYTES + piece.len(), "{fed}");
    }
}
