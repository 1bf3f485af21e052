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

/// One data line.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub date: NaiveDate,
    pub campaign_id: u64,
    pub campaign_name: String,
    pub ad_group_id: u64,
    pub ad_group_name: String,
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

/// Splits a byte stream into lines and lines into rows.
#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
    /// Column index of each of [`FIELDS`], once the header line is seen.
    columns: Option<Vec<usize>>,
    pub rows: u64,
    pub bytes: u64,
    /// The summary's `Total rows: N`, when the server sent one.
    pub total: Option<u64>,
    line_no: u64,
    summary_required: bool,
}

impl Parser {
    /// A parser for an answer asked with its summary line (`skipReportSummary: false`).
    pub fn expecting_summary() -> Parser {
        Parser {
            summary_required: true,
            ..Parser::default()
        }
    }

    /// Feed a chunk; `emit` gets every complete row.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut emit: impl FnMut(ReportRow) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.bytes += chunk.len() as u64;
        let mut start = 0;
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let line_end = start + pos;
            if self.pending.is_empty() {
                let line = &chunk[start..line_end];
                if let Some(row) = self.line(line)? {
                    emit(row)?;
                }
            } else {
                self.pending.extend_from_slice(&chunk[start..line_end]);
                let line = std::mem::take(&mut self.pending);
                if let Some(row) = self.line(&line)? {
                    emit(row)?;
                }
            }
            start = line_end + 1;
            rest = &chunk[start..];
        }
        self.pending.extend_from_slice(rest);
        // A report line is a few hundred bytes; a stream without newlines is no report.
        anyhow::ensure!(
            self.pending.len() <= MAX_LINE_BYTES,
            "report line {} is longer than {} KiB: the answer is not a TSV report",
            self.line_no + 1,
            MAX_LINE_BYTES / 1024
        );
        Ok(())
    }

    /// The end of the stream: a last line without `\n`, and the summary check.
    pub fn finish(
        &mut self,
        mut emit: impl FnMut(ReportRow) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            if let Some(row) = self.line(&line)? {
                emit(row)?;
            }
        }
        match self.total {
            Some(total) if total != self.rows => anyhow::bail!(
                "the report says `Total rows: {total}` but {} rows arrived: the answer was cut off",
                self.rows
            ),
            None if self.summary_required => anyhow::bail!(
                "the report ended after {} rows without its `Total rows` line: the answer was cut off",
                self.rows
            ),
            _ => Ok(()),
        }
    }

    fn line(&mut self, raw: &[u8]) -> anyhow::Result<Option<ReportRow>> {
        self.line_no += 1;
        let text = std::str::from_utf8(raw)
            .map_err(|_| anyhow::anyhow!("report line {} is not UTF-8", self.line_no))?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.is_empty() {
            return Ok(None);
        }
        if let Some(n) = text.strip_prefix("Total rows:") {
            self.total = Some(
                n.trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("report summary `{text}` has no row count"))?,
            );
            return Ok(None);
        }
        let cells: Vec<&str> = text.split('\t').collect();
        if self.columns.is_none() {
            if cells.contains(&"Date") && cells.contains(&"AdId") {
                let index = FIELDS
                    .iter()
                    .map(|f| {
                        cells.iter().position(|c| c == f).ok_or_else(|| {
                            anyhow::anyhow!("the report's header line lacks column `{f}`: {text}")
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                self.columns = Some(index);
                return Ok(None);
            }
            // No header line (skipped): a data line is in request order; anything else
            // before the header is the title.
            if cells.len() != FIELDS.len()
                || NaiveDate::parse_from_str(cells[0], "%Y-%m-%d").is_err()
            {
                return Ok(None);
            }
            self.columns = Some((0..FIELDS.len()).collect());
        }
        let columns = self.columns.as_ref().expect("set above");
        let cell = |i: usize| cells.get(columns[i]).copied().unwrap_or("");
        let at =
            |what: &str, e: String| anyhow::anyhow!("report line {}: `{what}`: {e}", self.line_no);
        let count = |i: usize| -> anyhow::Result<u64> {
            match cell(i).trim() {
                "--" | "" => Ok(0),
                v => v
                    .parse()
                    .map_err(|_| at(FIELDS[i], format!("`{v}` is not a count"))),
            }
        };
        let date = NaiveDate::parse_from_str(cell(0), "%Y-%m-%d")
            .map_err(|_| at("Date", format!("`{}` is not a date", cell(0))))?;
        let cost = match cell(8).trim() {
            "--" | "" => 0,
            v => zakaz_core::money::parse_kopecks(v).map_err(|e| at("Cost", e))?,
        };
        // `--` (or nothing) where an id should be: an ad the report does not show.
        let hidden = |i: usize| matches!(cell(i).trim(), "--" | "");
        let ad_hidden = hidden(3) || hidden(5);
        let conversions = match cell(9).trim() {
            "--" | "" => None,
            v => Some(
                v.parse()
                    .map_err(|_| at("Conversions", format!("`{v}` is not a count")))?,
            ),
        };
        self.rows += 1;
        Ok(Some(ReportRow {
            date,
            campaign_id: count(1)?,
            campaign_name: cell(2).to_owned(),
            ad_group_id: count(3)?,
            ad_group_name: if hidden(4) {
                String::new()
            } else {
                cell(4).to_owned()
            },
            ad_id: count(5)?,
            impressions: count(6)?,
            clicks: count(7)?,
            cost,
            conversions,
            ad_hidden,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> anyhow::Result<Vec<ReportRow>> {
        let mut p = Parser::default();
        let mut rows = Vec::new();
        for c in chunks {
            p.feed(c.as_bytes(), |r| {
                rows.push(r);
                Ok(())
            })?;
        }
        p.finish(|r| {
            rows.push(r);
            Ok(())
        })?;
        Ok(rows)
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
            let mut p = Parser::default();
            let mut rows = Vec::new();
            for c in text.as_bytes().chunks(split) {
                p.feed(c, |r| {
                    rows.push(r);
                    Ok(())
                })
                .unwrap();
            }
            p.finish(|r| {
                rows.push(r);
                Ok(())
            })
            .unwrap();
            assert_eq!(rows.len(), 2, "split {split} ({} chunks)", chunks.len());
            assert_eq!(rows[0].cost, 1250);
            assert_eq!(rows[0].conversions, None);
            assert_eq!(rows[1].conversions, Some(2));
            assert_eq!(rows[0].campaign_name, "Поиск msk");
        }
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
            let mut p = Parser::expecting_summary();
            let mut n = 0;
            p.feed(text.as_bytes(), |_| {
                n += 1;
                Ok(())
            })?;
            p.finish(|_| {
                n += 1;
                Ok(())
            })?;
            anyhow::Ok(n)
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
                    if ok && p.feed(&text[start..cut], |_| { rows += 1; Ok(()) }).is_err() {
                        ok = false;
                    }
                    start = cut;
                }
                if ok {
                    let _ = p.finish(|_| { rows += 1; Ok(()) });
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
        assert_eq!((rows[0].ad_id, rows[0].ad_group_name.as_str()), (0, ""));
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
        let mut result = Ok(());
        for c in chunks {
            result = p.feed(c.as_bytes(), |_| Ok(()));
        }
        let err = result.unwrap_err().to_string();
        assert!(err.starts_with("report line 3:"), "{err}");
        assert_eq!(p.bytes, chunks.iter().map(|c| c.len() as u64).sum::<u64>());
    }
}
