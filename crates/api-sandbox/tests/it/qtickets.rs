use serde_json::{Value, json};

use crate::{Sb, json_of};

/// Every order reachable by plain paging, following `perPage`/`total`.
fn page_all(sb: &Sb, body: Value) -> (Vec<Value>, usize, usize) {
    let mut orders = Vec::new();
    let mut page = 1;
    let mut pages = 0;
    let mut last_len = 0;
    loop {
        let mut b = body.clone();
        b["page"] = json!(page);
        let resp = json_of(sb.qt("/orders", b));
        let per_page = resp["paging"]["perPage"].as_u64().unwrap() as usize;
        let total = resp["paging"]["total"].as_u64().unwrap() as usize;
        let data = resp["data"].as_array().unwrap().clone();
        assert!(data.len() <= per_page);
        last_len = if data.is_empty() {
            last_len
        } else {
            data.len()
        };
        orders.extend(data);
        pages += 1;
        if page >= total.div_ceil(per_page) {
            return (orders, total, last_len);
        }
        page += 1;
        assert!(page < 10_000, "paging never ends");
        let _ = pages;
    }
}

#[test]
fn paging_stops_on_per_page_and_total() {
    let sb = Sb::new();
    let (orders, total, last_len) = page_all(&sb, json!({}));
    assert_eq!(orders.len(), total);
    assert!(total > 50, "several pages of history");
    assert_eq!(last_len, if total % 50 == 0 { 50 } else { total % 50 });
    let ids: Vec<u64> = orders.iter().map(|o| o["id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ascending id, no duplicates"
    );
    // A page past the end is empty, not an error.
    let beyond = json_of(sb.qt("/orders", json!({"page": total / 50 + 5})));
    assert_eq!(beyond["data"], json!([]));
    // An empty result: total 0.
    let none = json_of(sb.qt(
        "/orders",
        json!({"where": [{"column": "id", "operator": ">", "value": 99_999_999}]}),
    ));
    assert_eq!(none["paging"]["total"], 0);
    assert_eq!(none["data"], json!([]));
}

#[test]
fn query_string_filters_are_ignored_body_filters_are_not() {
    let sb = Sb::new();
    let plain = sb.qt("/orders", json!({})).text().unwrap();
    let with_query = sb
        .get("/qtickets/api/rest/v1/orders?payed=1&per_page=500")
        .bearer_auth("sandbox-token")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(plain, with_query, "query string changes nothing");

    let all = json_of(sb.qt("/orders", json!({})));
    let paid = json_of(sb.qt(
        "/orders",
        json!({"where": [{"column": "payed", "value": 1}]}),
    ));
    assert!(paid["paging"]["total"].as_u64() < all["paging"]["total"].as_u64());
    assert!(
        paid["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["payed"] == true)
    );
    assert_eq!(paid["paging"]["perPage"], 50, "server-chosen page size");
}

#[test]
fn orders_have_the_real_type_quirks() {
    let sb = Sb::new();
    let orders = sb.server.sandbox().qtickets_orders();
    assert!(
        orders.iter().any(|o| o["utm"] == json!([])),
        "empty utm is []"
    );
    assert!(orders.iter().any(|o| o["utm"].is_object()));
    assert!(orders.iter().any(|o| o["reserved"].is_boolean()));
    assert!(orders.iter().any(|o| o["reserved"].is_number()));
    assert!(
        orders.iter().any(|o| o["deleted_at"].is_string()),
        "cancelled orders"
    );
    assert!(
        orders
            .iter()
            .any(|o| o["payed"] == false && o["deleted_at"].is_null()),
        "unpaid orders"
    );
    let baskets: Vec<&Value> = orders
        .iter()
        .flat_map(|o| o["baskets"].as_array().unwrap())
        .collect();
    assert!(
        baskets
            .iter()
            .any(|b| b["refunded_at"].is_string() && b["refunded_amount"].is_number())
    );
    assert!(
        baskets.iter().any(|b| b["price"].is_f64()),
        "fractional money is a float"
    );
    assert!(
        baskets.iter().any(|b| b["price"].is_u64()),
        "whole money is an integer"
    );
    assert!(
        orders
            .iter()
            .any(|o| o["created_at"].as_str().unwrap().ends_with("+07:00")),
        "city offsets"
    );
    for o in &orders {
        assert_eq!(o["currency_id"], "RUB");
        assert!(o.get("currency").is_none());
        let sum: f64 = o["baskets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["price"].as_f64().unwrap())
            .sum();
        assert!(
            (sum - o["price"].as_f64().unwrap()).abs() < 0.001,
            "price = Σ basket prices"
        );
    }
}

#[test]
fn events_shows_seats_and_odd_routes() {
    let sb = Sb::new();
    let events = json_of(sb.qt("/events", json!({})));
    assert_eq!(events["paging"]["perPage"], 10);
    assert_eq!(events["paging"]["total"], 20);
    let event = &events["data"][0];
    assert!(event["city"]["timezone"].is_string() && event["city"]["name"].is_string());
    let show_id = event["shows"][0]["id"].as_u64().unwrap();
    let seats = json_of(sb.qt(
        &format!("/shows/{show_id}/seats"),
        json!({"select": ["id"], "flat": true}),
    ));
    let map = seats["data"].as_object().unwrap();
    assert!(!map.is_empty());
    for seat in map.values() {
        let (max, free, paid) = (
            seat["max_quantity"].as_u64().unwrap(),
            seat["free_quantity"].as_u64().unwrap(),
            seat["payed_quantity"].as_u64().unwrap(),
        );
        assert!(free + paid <= max);
    }
    let ga = json_of(sb.qt("/events", json!({"page": 2})));
    assert_eq!(ga["paging"]["currentPage"], 2);

    let barcodes = json_of(sb.qt(&format!("/shows/{show_id}/barcodes"), json!({})));
    assert!(barcodes.is_array(), "a bare array");

    for missing in ["/events/1001/seats", "/barcodes", "/price-shades"] {
        let resp = sb.qt(missing, json!({}));
        assert_eq!(resp.status(), 404);
        assert!(
            resp.text().unwrap().starts_with("<!DOCTYPE html>"),
            "{missing}: HTML 404"
        );
    }
    let order = json_of(sb.qt("/orders/1", json!({})));
    assert_eq!(order["code"], "RESOURCE_NOT_FOUND");
}

#[test]
fn a_bad_token_answers_403() {
    let sb = Sb::new();
    let resp = sb
        .get("/qtickets/api/rest/v1/orders")
        .bearer_auth("wrong")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[test]
fn date_filters_need_a_colon_offset_and_can_be_ignored() {
    let sb = Sb::new();
    let filter = |offset: &str| json!({"where": [{"column": "updated_at", "operator": ">=", "value": format!("2026-11-24T00:00:00{offset}")}]});
    let ok = json_of(sb.qt("/orders", filter("+03:00")));
    let all = json_of(sb.qt("/orders", json!({})));
    assert!(ok["paging"]["total"].as_u64().unwrap() < all["paging"]["total"].as_u64().unwrap());
    assert_eq!(sb.qt("/orders", filter("+0300")).status(), 400);
    sb.control("/config", json!({"qtickets_date_filters": "ignored"}));
    let ignored = json_of(sb.qt("/orders", filter("+03:00")));
    assert_eq!(ignored["paging"]["total"], all["paging"]["total"]);
}

#[test]
fn advancing_the_clock_reveals_new_orders_and_refunds() {
    let sb = Sb::new();
    let before = sb.server.sandbox().qtickets_orders();
    let refunds = |orders: &[Value]| {
        orders
            .iter()
            .flat_map(|o| o["baskets"].as_array().unwrap())
            .filter(|b| b["refunded_at"].is_string())
            .count()
    };
    sb.control("/advance", json!({"days": 2}));
    let after = sb.server.sandbox().qtickets_orders();
    assert!(after.len() > before.len(), "new orders");
    let old_ids: Vec<&Value> = before.iter().map(|o| &o["id"]).collect();
    let old_after: Vec<Value> = after
        .iter()
        .filter(|o| old_ids.contains(&&o["id"]))
        .cloned()
        .collect();
    assert!(
        refunds(&old_after) > refunds(&before),
        "old orders got refunds"
    );
    let changed = old_after
        .iter()
        .zip(&before)
        .filter(|(a, b)| a["updated_at"] != b["updated_at"])
        .count();
    assert!(changed > 0, "updated_at moves with the change");
}

#[test]
fn non_get_requests_are_logged_for_tests_to_catch() {
    let sb = Sb::new();
    sb.post("/qtickets/api/rest/v1/shows/1/barcode/123")
        .bearer_auth("sandbox-token")
        .send()
        .unwrap();
    let log = sb.requests("/qtickets/");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(
        log[0]["headers"]["authorization"], "Bearer ***",
        "{:?}",
        log[0]["headers"]
    );
}
