use serde_json::{Value, json};

use crate::{Sb, json_of};

fn body(name: &str, from: &str, to: &str) -> Value {
    json!({"params": {
        "SelectionCriteria": {"DateFrom": from, "DateTo": to},
        "FieldNames": ["Date", "CampaignId", "AdId", "Impressions", "Clicks", "Cost"],
        "ReportName": name, "ReportType": "AD_PERFORMANCE_REPORT",
        "DateRangeType": "CUSTOM_DATE", "Format": "TSV", "IncludeVAT": "YES", "IncludeDiscount": "NO"
    }})
}

fn report(
    sb: &Sb,
    login: &str,
    body: &Value,
    skip: bool,
    micros: bool,
) -> reqwest::blocking::Response {
    let mut req = sb
        .post("/direct/json/v5/reports")
        .bearer_auth("sandbox-token")
        .header("Client-Login", login)
        .header("processingMode", "offline")
        .json(body);
    if skip {
        req = req
            .header("skipReportHeader", "true")
            .header("skipColumnHeader", "true")
            .header("skipReportSummary", "true");
    }
    if !micros {
        req = req.header("returnMoneyInMicros", "false");
    }
    req.send().unwrap()
}

#[test]
fn offline_report_goes_201_202_200_and_honours_the_headers() {
    let sb = Sb::new();
    let b = body("r1", "2026-11-20", "2026-11-21");
    let first = report(&sb, "client-a", &b, false, true);
    assert_eq!(first.status(), 201);
    assert_eq!(first.headers()["retryIn"], "1");
    assert!(first.headers().contains_key("reportsInQueue"));
    assert_eq!(report(&sb, "client-a", &b, false, true).status(), 202);
    let done = report(&sb, "client-a", &b, false, true);
    assert_eq!(done.status(), 200);
    let tsv = done.text().unwrap();
    let lines: Vec<&str> = tsv.lines().collect();
    assert!(lines[0].starts_with("\"r1 ("), "title: {}", lines[0]);
    assert_eq!(
        lines[1],
        "Date\tCampaignId\tAdId\tImpressions\tClicks\tCost"
    );
    let last = lines.last().unwrap();
    assert_eq!(*last, format!("Total rows: {}", lines.len() - 3));
    let cost_micros: u64 = lines[2].split('\t').nth(5).unwrap().parse().unwrap();
    assert_eq!(cost_micros % 10_000, 0, "money in micros by default");

    // The same report without headers, in rubles.
    let b2 = body("r2", "2026-11-20", "2026-11-21");
    for _ in 0..2 {
        report(&sb, "client-a", &b2, true, false);
    }
    let plain = report(&sb, "client-a", &b2, true, false).text().unwrap();
    let plain_lines: Vec<&str> = plain.lines().collect();
    assert_eq!(
        plain_lines.len(),
        lines.len() - 3,
        "no title, no header, no summary"
    );
    let cost: f64 = plain_lines[0].split('\t').nth(5).unwrap().parse().unwrap();
    assert!((cost * 1_000_000.0 - cost_micros as f64).abs() < 1.0);
}

#[test]
fn online_mode_answers_at_once() {
    let sb = Sb::new();
    let resp = sb
        .post("/direct/json/v5/reports")
        .bearer_auth("sandbox-token")
        .header("Client-Login", "client-b")
        .header("processingMode", "online")
        .json(&body("o1", "2026-11-24", "2026-11-24"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The whole report at once: title, column names, one row per ad with impressions that
    // day (Campaign Wizard ads as `--`), and the summary counting them.
    let text = resp.text().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("\"o1 (2026-11-24 - 2026-11-24)\""),
        "{text}"
    );
    assert_eq!(
        lines[1],
        "Date\tCampaignId\tAdId\tImpressions\tClicks\tCost"
    );
    let server = sb.server.sandbox();
    let date: chrono::NaiveDate = "2026-11-24".parse().unwrap();
    let expected: Vec<String> = server
        .data
        .direct
        .ads
        .iter()
        .filter(|a| a.login == "client-b")
        .filter_map(|a| {
            let (impressions, clicks, cost, _) =
                api_sandbox::direct::ad_day(server.config.seed, a.ad_id, date);
            let ad = if a.wizard {
                "--".to_owned()
            } else {
                a.ad_id.to_string()
            };
            (impressions > 0).then(|| {
                format!(
                    "2026-11-24\t{}\t{ad}\t{impressions}\t{clicks}\t{}",
                    a.campaign_id,
                    cost * 10_000
                )
            })
        })
        .collect();
    assert!(expected.len() > 3, "{expected:?}");
    assert!(expected.iter().any(|l| l.contains("\t--\t")), "wizard ads");
    assert_eq!(lines[2..lines.len() - 1], expected[..]);
    assert_eq!(
        lines.last().unwrap(),
        &format!("Total rows: {}", expected.len())
    );
}

#[test]
fn sixth_queued_report_is_refused_with_9000_and_names_are_unique() {
    let sb = Sb::new();
    for i in 0..5 {
        assert_eq!(
            report(
                &sb,
                "client-a",
                &body(&format!("q{i}"), "2026-11-01", "2026-11-02"),
                true,
                false
            )
            .status(),
            201
        );
    }
    let sixth = report(
        &sb,
        "client-a",
        &body("q5", "2026-11-01", "2026-11-02"),
        true,
        false,
    );
    assert_eq!(sixth.status(), 400);
    assert_eq!(json_of(sixth)["error"]["error_code"], 9000);
    let reused = report(
        &sb,
        "client-a",
        &body("q0", "2026-10-01", "2026-10-02"),
        true,
        false,
    );
    assert_eq!(json_of(reused)["error"]["error_code"], 4000);
}

#[test]
fn wrong_token_and_login_get_vendor_error_codes() {
    let sb = Sb::new();
    let bad = sb
        .post("/direct/json/v5/reports")
        .bearer_auth("nope")
        .header("Client-Login", "client-a")
        .json(&body("x", "2026-11-01", "2026-11-01"))
        .send()
        .unwrap();
    assert_eq!(json_of(bad)["error"]["error_code"], 53);
    let login = report(
        &sb,
        "stranger",
        &body("y", "2026-11-01", "2026-11-01"),
        true,
        false,
    );
    assert_eq!(json_of(login)["error"]["error_code"], 54);
}

#[test]
fn auto_mode_serves_a_small_report_at_once_and_retry_in_changes() {
    let sb = Sb::new();
    let send = |b: &Value, mode: &str| {
        sb.post("/direct/json/v5/reports")
            .bearer_auth("sandbox-token")
            .header("Client-Login", "client-a")
            .header("processingMode", mode)
            .header("returnMoneyInMicros", "false")
            .json(b)
            .send()
            .unwrap()
    };
    let one_day = body("small", "2026-11-20", "2026-11-20");
    let resp = send(&one_day, "auto");
    assert_eq!(resp.status(), 200, "a one-day report comes online at once");
    assert!(
        resp.headers().get("units").is_none(),
        "Units is not promised"
    );
    let week = body("week", "2026-11-14", "2026-11-20");
    let first = send(&week, "auto");
    assert_eq!(first.status(), 201);
    let second = send(&week, "auto");
    assert_eq!(second.status(), 202);
    assert_ne!(first.headers()["retryIn"], second.headers()["retryIn"]);
    sb.control(
        "/config",
        json!({"direct_online_days": 0, "direct_units": true}),
    );
    assert_eq!(
        send(&body("small2", "2026-11-20", "2026-11-20"), "auto").status(),
        201
    );
    let done = send(&week, "auto");
    assert_eq!(done.status(), 200);
    assert!(done.headers().contains_key("units"));
}

#[test]
fn custom_report_has_conversions_with_dashes_where_there_are_no_goals() {
    let sb = Sb::new();
    let b = json!({"params": {
        "SelectionCriteria": {"DateFrom": "2026-11-20", "DateTo": "2026-11-20"},
        "FieldNames": ["Date", "CampaignId", "CampaignName", "AdGroupId", "AdGroupName", "AdId", "Impressions", "Clicks", "Cost", "Conversions"],
        "ReportName": "custom", "ReportType": "CUSTOM_REPORT",
        "DateRangeType": "CUSTOM_DATE", "Format": "TSV", "IncludeVAT": "YES", "IncludeDiscount": "NO"
    }});
    let resp = sb
        .post("/direct/json/v5/reports")
        .bearer_auth("sandbox-token")
        .header("Client-Login", "client-a")
        .header("processingMode", "online")
        .header("skipReportHeader", "true")
        .header("skipReportSummary", "true")
        .json(&b)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tsv = resp.text().unwrap();
    let conversions: Vec<&str> = tsv
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(9).unwrap())
        .collect();
    assert!(conversions.contains(&"--"), "{tsv}");
    assert!(
        conversions.iter().any(|c| c.parse::<u64>().is_ok()),
        "{tsv}"
    );
}
