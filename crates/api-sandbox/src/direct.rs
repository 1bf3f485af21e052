//! Yandex Direct API v5 Reports: TSV reports per `Client-Login`, the offline state machine
//! (201 with `retryIn` → 202 → 200, keyed by login and whole body), a queue of at most five
//! reports per user (the sixth gets 400 with code 9000), money in micros unless
//! `returnMoneyInMicros: false`, the three `skip*` headers, and `ReportName` reuse with a
//! different body refused with code 4000. In `processingMode: auto` a small report comes
//! back online at once; `retryIn` changes between polls; `Units` only when switched on (it
//! is not confirmed for Reports); `Conversions` is `--` for campaigns without goals;
//! campaigns made in the Campaign Wizard (the second of each login) show `--` for
//! `AdGroupId`, `AdGroupName` and `AdId`, one row per hidden ad; the summary line
//! `Total rows: N`. On request: rows dropped (statistics corrected after the fact) and an
//! answer that ends early without its summary line.

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::http::{Req, Resp};
use crate::rng::Rng;
use crate::{Sandbox, SandboxConfig};

pub const TOKEN: &str = "sandbox-token";
pub const MAX_QUEUED: usize = 5;
const FIELDS: &[&str] = &[
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

/// City aliases in campaign names (`Поиск msk …`), one of them unknown to the loaders.
pub const CITY_ALIASES: &[&str] = &["msk", "spb", "ekb", "kzn", "tula"];

pub struct Ad {
    pub login: String,
    pub campaign_id: u64,
    pub campaign_name: String,
    pub group_id: u64,
    pub ad_id: u64,
    /// Whether the campaign has goals (else `Conversions` is `--`).
    pub has_goals: bool,
    /// Made in the Campaign Wizard: the report shows `--` for its group and ad.
    pub wizard: bool,
}

pub struct DirectData {
    pub logins: Vec<String>,
    pub ads: Vec<Ad>,
}

impl DirectData {
    pub fn generate(cfg: &SandboxConfig) -> DirectData {
        let logins: Vec<String> = (0..cfg.direct_logins)
            .map(|i| format!("client-{}", (b'a' + i as u8) as char))
            .collect();
        let mut ads = Vec::new();
        for (l, login) in logins.iter().enumerate() {
            for c in 0..cfg.direct_campaigns {
                let campaign_id = 50_000_000 + l as u64 * 1000 + u64::from(c);
                for g in 0..2 {
                    let group_id = campaign_id * 10 + g;
                    for a in 0..2 {
                        ads.push(Ad {
                            login: login.clone(),
                            campaign_id,
                            campaign_name: format!(
                                "Поиск {} {login} {c}",
                                CITY_ALIASES[c as usize % CITY_ALIASES.len()]
                            ),
                            group_id,
                            ad_id: group_id * 10 + a,
                            has_goals: c % 3 != 2,
                            wizard: c % 3 == 1,
                        });
                    }
                }
            }
        }
        DirectData { logins, ads }
    }
}

/// Whether an ad's row of a day is still served after `/config
/// {"direct_rows_kept_percent"}` (deterministic per ad and day).
pub fn row_kept(seed: u64, ad_id: u64, date: NaiveDate, kept_percent: u64) -> bool {
    kept_percent >= 100
        || Rng::stream(seed, &format!("direct-kept-{ad_id}-{date}")).range(0, 99) < kept_percent
}

/// One ad's statistics for one day: (impressions, clicks, cost in kopecks with VAT,
/// conversions).
pub fn ad_day(seed: u64, ad_id: u64, date: NaiveDate) -> (u64, u64, i64, u64) {
    let mut rng = Rng::stream(seed, &format!("direct-{ad_id}-{date}"));
    if rng.chance(15) {
        return (0, 0, 0, 0);
    }
    let impressions = rng.range(10, 20_000);
    let clicks = impressions * rng.range(5, 80) / 1000;
    let cost = clicks as i64 * rng.range(200, 1_500) as i64;
    let conversions = clicks / rng.range(5, 30);
    (impressions, clicks, cost, conversions)
}

fn direct_error(status: u16, code: u32, text: &str, detail: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": {"request_id": "8695244274068608439", "error_code": code, "error_string": text, "error_detail": detail}}),
    )
    .with_header("RequestId", "8695244274068608439")
}

pub fn fault_body(status: u16) -> Resp {
    match status {
        400 => direct_error(
            400,
            9000,
            "Too many reports in the queue",
            "At most 5 reports may wait offline",
        ),
        500 => direct_error(
            500,
            1000,
            "Internal server error",
            "Report could not be built",
        ),
        502 => direct_error(
            502,
            1002,
            "Operation error",
            "Report is too large: shorten the period",
        ),
        s => direct_error(s, 1001, "Service temporarily unavailable", ""),
    }
}

struct ReportRequest {
    from: NaiveDate,
    to: NaiveDate,
    fields: Vec<String>,
    name: String,
    campaign_filter: Option<Vec<u64>>,
    include_vat: bool,
    /// `OrderBy` asks for rows ordered by date, ascending; without it the order is the
    /// service's (unspecified: served ad by ad here).
    by_date: bool,
}

fn parse_request(body: &Value) -> Result<ReportRequest, String> {
    let params = body.get("params").ok_or("`params` is required")?;
    let criteria = params
        .get("SelectionCriteria")
        .ok_or("`SelectionCriteria` is required")?;
    let date = |k: &str| {
        criteria
            .get(k)
            .and_then(Value::as_str)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .ok_or(format!("`SelectionCriteria.{k}` must be YYYY-MM-DD"))
    };
    let (from, to) = (date("DateFrom")?, date("DateTo")?);
    if from > to {
        return Err("DateFrom is after DateTo".into());
    }
    let fields: Vec<String> = params
        .get("FieldNames")
        .and_then(Value::as_array)
        .ok_or("`FieldNames` is required")?
        .iter()
        .map(|f| {
            f.as_str()
                .map(str::to_owned)
                .ok_or("field names are strings")
        })
        .collect::<Result<_, _>>()?;
    let report_type = params
        .get("ReportType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !matches!(report_type, "AD_PERFORMANCE_REPORT" | "CUSTOM_REPORT") {
        return Err(format!("`ReportType` `{report_type}` is not served here"));
    }
    if let Some(bad) = fields.iter().find(|f| !FIELDS.contains(&f.as_str())) {
        return Err(format!("field `{bad}` is not available in {report_type}"));
    }
    let name = params
        .get("ReportName")
        .and_then(Value::as_str)
        .ok_or("`ReportName` is required")?
        .to_owned();
    if params.get("DateRangeType").and_then(Value::as_str) != Some("CUSTOM_DATE") {
        return Err("`DateRangeType` must be CUSTOM_DATE when dates are given".into());
    }
    if params.get("Format").and_then(Value::as_str) != Some("TSV") {
        return Err("`Format` must be TSV".into());
    }
    let include_vat = match params.get("IncludeVAT").and_then(Value::as_str) {
        Some("YES") => true,
        Some("NO") => false,
        _ => return Err("`IncludeVAT` must be YES or NO".into()),
    };
    let mut campaign_filter = None;
    if let Some(filters) = criteria.get("Filter").and_then(Value::as_array) {
        for f in filters {
            if f.get("Field").and_then(Value::as_str) == Some("CampaignId") {
                let ids = f.get("Values").and_then(Value::as_array).map(|v| {
                    v.iter()
                        .filter_map(|x| {
                            x.as_str()
                                .and_then(|s| s.parse().ok())
                                .or_else(|| x.as_u64())
                        })
                        .collect()
                });
                campaign_filter = ids;
            }
        }
    }
    let mut by_date = false;
    if let Some(order) = params.get("OrderBy") {
        let order = order.as_array().ok_or("`OrderBy` must be an array")?;
        for o in order {
            let field = o.get("Field").and_then(Value::as_str).unwrap_or_default();
            if !FIELDS.contains(&field) {
                return Err(format!("`OrderBy` field `{field}` is not available"));
            }
            let ascending = match o.get("SortOrder").and_then(Value::as_str) {
                None | Some("ASCENDING") => true,
                Some("DESCENDING") => false,
                Some(other) => return Err(format!("`SortOrder` `{other}` is unknown")),
            };
            // Only the first key decides the order served here.
            if o == &order[0] {
                by_date = field == "Date" && ascending;
            }
        }
    }
    Ok(ReportRequest {
        from,
        to,
        fields,
        name,
        campaign_filter,
        include_vat,
        by_date,
    })
}

fn header_true(req: &Req, name: &str) -> bool {
    req.header(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

pub fn handle(sb: &Sandbox, req: &Req) -> Resp {
    if req.method != "POST" {
        return Resp::html_404();
    }
    if req.bearer() != Some(TOKEN) {
        return direct_error(400, 53, "Authorization error", "Invalid OAuth token");
    }
    let data = &sb.data.direct;
    let login = match req.header("client-login") {
        Some(l) if data.logins.iter().any(|x| x == l) => l.to_owned(),
        Some(_) => {
            return direct_error(
                400,
                54,
                "No rights",
                "No rights to access the advertiser in Client-Login",
            );
        }
        None => {
            return direct_error(
                400,
                8000,
                "Invalid request",
                "Client-Login is required for agency accounts",
            );
        }
    };
    let body = match req.json() {
        Ok(v) => v,
        Err(e) => return direct_error(400, 8000, "Invalid request", &format!("Invalid JSON: {e}")),
    };
    let report = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return direct_error(400, 8000, "Invalid request", &e),
    };
    let key = format!(
        "{login}\n{}\n{}",
        body,
        req.header("returnMoneyInMicros").unwrap_or("")
    );
    let mode = req
        .header("processingMode")
        .unwrap_or("auto")
        .to_ascii_lowercase();
    let days = (report.to - report.from).num_days() as u64 + 1;
    {
        let mut state = sb.state();
        match state.direct_names.get(&report.name) {
            Some(existing) if *existing != key => {
                return direct_error(
                    400,
                    4000,
                    "Invalid request parameters",
                    "A report with this name but other parameters exists; use a new ReportName",
                );
            }
            _ => {}
        }
        state.direct_names.insert(report.name.clone(), key.clone());
        let online_now = mode == "auto" && days <= state.direct_online_days;
        if mode != "online" && !online_now {
            let polls = state.direct_pending.get(&key).copied();
            match polls {
                None => {
                    if state.direct_pending.len() >= MAX_QUEUED {
                        return direct_error(
                            400,
                            9000,
                            "Too many reports in the queue",
                            "At most 5 reports may wait offline; wait for one to finish",
                        );
                    }
                    state.direct_pending.insert(key.clone(), 1);
                    let queued = state.direct_pending.len();
                    return Resp::empty(201)
                        .with_header("RequestId", "1")
                        .with_header("retryIn", state.direct_retry_in.to_string())
                        .with_header("reportsInQueue", queued.to_string());
                }
                Some(1) => {
                    state.direct_pending.insert(key.clone(), 2);
                    let queued = state.direct_pending.len();
                    // The service re-estimates: the wait is not the same twice.
                    return Resp::empty(202)
                        .with_header("RequestId", "2")
                        .with_header("retryIn", (state.direct_retry_in + 1).to_string())
                        .with_header("reportsInQueue", queued.to_string());
                }
                Some(_) => {
                    state.direct_pending.remove(&key);
                }
            }
        }
    }
    let micros = !req
        .header("returnMoneyInMicros")
        .is_some_and(|v| v.eq_ignore_ascii_case("false"));
    let mut out = String::new();
    if !header_true(req, "skipReportHeader") {
        out.push_str(&format!(
            "\"{} ({} - {})\"\n",
            report.name, report.from, report.to
        ));
    }
    if !header_true(req, "skipColumnHeader") {
        out.push_str(&report.fields.join("\t"));
        out.push('\n');
    }
    let (kept, cut_after, ignore_order_by) = {
        let state = sb.state();
        (
            state.direct_rows_kept_percent,
            state.direct_cut_after_rows,
            state.direct_ignore_order_by,
        )
    };
    let dates: Vec<NaiveDate> = report
        .from
        .iter_days()
        .take_while(|d| *d <= report.to && *d <= sb.today())
        .collect();
    let ads: Vec<_> = data
        .ads
        .iter()
        .filter(|a| a.login == login)
        .filter(|a| {
            report
                .campaign_filter
                .as_ref()
                .is_none_or(|f| f.contains(&a.campaign_id))
        })
        .collect();
    // Date by date when asked (and not told to ignore it); else ad by ad, each ad's days in
    // turn: an order that is not by date.
    let cells: Vec<(NaiveDate, usize)> = if report.by_date && !ignore_order_by {
        dates
            .iter()
            .flat_map(|d| (0..ads.len()).map(move |a| (*d, a)))
            .collect()
    } else {
        (0..ads.len())
            .flat_map(|a| dates.iter().map(move |d| (*d, a)))
            .collect()
    };
    let mut rows = 0;
    for (date, a) in cells {
        let ad = ads[a];
        let (impressions, clicks, cost_vat, conversions) = ad_day(sb.config.seed, ad.ad_id, date);
        if impressions == 0 || !row_kept(sb.config.seed, ad.ad_id, date, kept) {
            continue;
        }
        if cut_after.is_some_and(|n| rows >= n) {
            break;
        }
        let cost = if report.include_vat {
            cost_vat
        } else {
            cost_vat * 100 / 120
        };
        let cells: Vec<String> = report
            .fields
            .iter()
            .map(|f| match f.as_str() {
                "Date" => date.to_string(),
                "CampaignId" => ad.campaign_id.to_string(),
                "CampaignName" => ad.campaign_name.clone(),
                "AdGroupId" | "AdGroupName" | "AdId" if ad.wizard => "--".to_owned(),
                "AdGroupId" => ad.group_id.to_string(),
                "AdGroupName" => format!("Группа {}", ad.group_id),
                "Conversions" if ad.has_goals => conversions.to_string(),
                "Conversions" => "--".to_owned(),
                "AdId" => ad.ad_id.to_string(),
                "Impressions" => impressions.to_string(),
                "Clicks" => clicks.to_string(),
                _ if micros => (cost * 10_000).to_string(),
                _ => format!("{}.{:02}", cost / 100, cost % 100),
            })
            .collect();
        out.push_str(&cells.join("\t"));
        out.push('\n');
        rows += 1;
    }
    if !header_true(req, "skipReportSummary") && cut_after.is_none_or(|n| rows < n) {
        out.push_str(&format!("Total rows: {rows}\n"));
    }
    let resp = Resp::text(200, "text/tab-separated-values; charset=UTF-8", out)
        .with_header("RequestId", "3");
    if sb.state().direct_units {
        resp.with_header("Units", "10/19990/20000")
    } else {
        resp
    }
}
