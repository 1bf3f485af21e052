use serde_json::json;

use crate::Sb;

fn snapshot(sb: &Sb) -> Vec<String> {
    let mut out = Vec::new();
    for page in 1..=3 {
        out.push(sb.qt("/orders", crate::every_order(page)).text().unwrap());
    }
    out.push(sb.qt("/events", json!({})).text().unwrap());
    out.push(
        sb.qt("/shows/100101/seats", json!({"flat": true}))
            .text()
            .unwrap(),
    );
    let vk = sb.vk_token().json::<serde_json::Value>().unwrap();
    let access = vk["access_token"].as_str().unwrap();
    out.push(
        sb.get("/vk/api/v2/statistics/banners/day.json?id=2001000,2001001&date_from=2026-11-01&date_to=2026-11-24")
            .bearer_auth(access)
            .send()
            .unwrap()
            .text()
            .unwrap(),
    );
    out.push(
        sb.post("/direct/json/v5/reports")
            .bearer_auth("sandbox-token")
            .header("Client-Login", "client-a")
            .header("processingMode", "online")
            .json(&json!({"params": {"SelectionCriteria": {"DateFrom": "2026-11-01", "DateTo": "2026-11-24"}, "FieldNames": ["Date", "AdId", "Impressions", "Clicks", "Cost"], "ReportName": "d", "ReportType": "AD_PERFORMANCE_REPORT", "DateRangeType": "CUSTOM_DATE", "Format": "TSV", "IncludeVAT": "YES"}}))
            .send()
            .unwrap()
            .text()
            .unwrap(),
    );
    out.push(
        sb.get("/_sandbox/gmail/reports")
            .send()
            .unwrap()
            .text()
            .unwrap(),
    );
    out
}

#[test]
fn the_same_seed_serves_byte_identical_data() {
    let a = Sb::new();
    let b = Sb::new();
    let (sa, sb_) = (snapshot(&a), snapshot(&b));
    assert!(sa.iter().all(|s| s.len() > 20), "non-trivial answers");
    assert_eq!(sa, sb_);
    let other = Sb::with(api_sandbox::SandboxConfig {
        seed: 7,
        now: Some(crate::NOW.into()),
        ..Default::default()
    });
    assert_ne!(snapshot(&other)[0], sa[0], "another seed, other data");
}
