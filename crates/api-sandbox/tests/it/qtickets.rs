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
    let (orders, total, last_len) = page_all(&sb, crate::every_order(1));
    assert_eq!(orders.len(), total);
    assert!(total > 50, "several pages of history");
    assert_eq!(last_len, if total % 50 == 0 { 50 } else { total % 50 });
    let ids: Vec<u64> = orders.iter().map(|o| o["id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ascending id, no duplicates"
    );
    // A page past the end is empty, not an error.
    let beyond = json_of(sb.qt("/orders", crate::every_order(total / 50 + 5)));
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
fn an_unfiltered_order_listing_is_refused_as_the_real_service_did() {
    let sb = Sb::new();
    for body in [
        json!({}),
        json!({"page": 2}),
        json!({"where": [], "orderBy": {"id": "desc"}}),
    ] {
        let resp = sb.qt("/orders", body.clone());
        assert_eq!(resp.status(), 503, "{body}");
        let answer = json_of(resp);
        assert_eq!(
            (answer["code"].as_str(), answer["status"].as_u64()),
            (Some("UNKNOWN_ERROR"), Some(503)),
            "{answer}"
        );
    }
    // A query string is no filter: the real service ignores it.
    let resp = sb
        .get("/qtickets/api/rest/v1/orders?payed=1")
        .bearer_auth("sandbox-token")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 503);
}

#[test]
fn query_string_filters_are_ignored_body_filters_are_not() {
    let sb = Sb::new();
    let plain = sb.qt("/orders", crate::every_order(1)).text().unwrap();
    let with_query = sb
        .get("/qtickets/api/rest/v1/orders?payed=1&per_page=500")
        .bearer_auth("sandbox-token")
        .json(&crate::every_order(1))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(plain, with_query, "query string changes nothing");

    let all = json_of(sb.qt("/orders", crate::every_order(1)));
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
            .all(|o| o["created_at"].as_str().unwrap().ends_with("+03:00")),
        "+03:00 everywhere by default, as the real service sends"
    );
    for o in &orders {
        assert_eq!(o["currency_id"], "RUB");
        assert!(o.get("currency").is_none());
        let sum: f64 = o["baskets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["price"].as_f64().unwrap() * b["quantity"].as_f64().unwrap())
            .sum();
        assert!(
            (sum - o["price"].as_f64().unwrap()).abs() < 0.001,
            "price = Σ basket price × quantity"
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
    let all = json_of(sb.qt("/orders", crate::every_order(1)));
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

/// What real captured answers of the production API look like, and the sandbox now serves.
#[test]
fn orders_look_like_the_real_captured_answers() {
    let sb = Sb::new();
    let orders = sb.server.sandbox().qtickets_orders();
    let empty_utm = orders.iter().filter(|o| o["utm"] == json!([])).count();
    let share = empty_utm as f64 / orders.len() as f64;
    assert!(
        (0.35..0.6).contains(&share),
        "about half have `utm: []`: {share}"
    );
    let filled: Vec<&Value> = orders.iter().filter(|o| o["utm"].is_object()).collect();
    let three = filled
        .iter()
        .filter(|o| {
            let mut keys: Vec<&String> = o["utm"].as_object().unwrap().keys().collect();
            keys.sort();
            keys == ["utm_campaign", "utm_medium", "utm_source"]
        })
        .count();
    assert!(
        three * 10 >= filled.len() * 9,
        "most carry only three tags: {three} of {}",
        filled.len()
    );
    assert!(three < filled.len(), "some carry utm_content too");
    for o in &orders {
        assert_eq!(o["client"]["details"]["middlename"], Value::Null);
        assert_eq!(o["custom"], json!(""));
        for b in o["baskets"].as_array().unwrap() {
            for key in [
                "ticket_amount",
                "service_fee_amount",
                "refunded_deduction_amount",
            ] {
                assert!(b[key].is_number(), "basket without `{key}`: {b}");
            }
            assert_eq!(
                b["refunds"].as_array().unwrap().len(),
                usize::from(!b["refunded_at"].is_null())
            );
        }
    }
}

#[test]
fn timestamps_carry_plus_three_unless_the_city_offset_variant_is_asked_for() {
    let novosibirsk = |sb: &Sb| {
        let events = json_of(sb.qt("/events", json!({})));
        let e = events["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["city"]["timezone"] == "Asia/Novosibirsk")
            .cloned()
            .expect("an event in Novosibirsk");
        e["shows"][0]["start_date"].as_str().unwrap().to_owned()
    };
    assert!(novosibirsk(&Sb::new()).ends_with("+03:00"));
    let city = Sb::with(api_sandbox::SandboxConfig {
        now: Some(crate::NOW.into()),
        qtickets_city_offsets: true,
        ..Default::default()
    });
    assert!(novosibirsk(&city).ends_with("+07:00"));
    // Some shows have no sale start.
    let events = json_of(Sb::new().qt("/events", json!({})));
    let nulls = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["shows"].as_array().unwrap().iter())
        .filter(|s| s["sale_start_date"].is_null())
        .count();
    assert!(nulls > 0);
}

#[test]
fn single_objects_unknown_routes_and_writes_answer_as_the_real_service() {
    let sb = Sb::new();
    let event = json_of(sb.qt("/events/1001", json!({})));
    assert_eq!(event["data"]["id"], 1001);
    let missing = sb.qt("/events/4360", json!({}));
    assert_eq!(missing.status(), 404);
    assert_eq!(
        json_of(missing),
        json!({"error": "Resource \"Event\" not found", "status": 404, "code": "RESOURCE_NOT_FOUND", "info": {"id": 4360, "resource": "Event"}})
    );
    let client = sb.qt("/clients/1", json!({}));
    assert_eq!(client.status(), 404);
    assert_eq!(json_of(client)["info"]["resource"], "Client");
    let post = sb
        .post("/qtickets/api/rest/v1/orders")
        .bearer_auth("sandbox-token")
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(post.status(), 503);
    assert_eq!(json_of(post)["code"], "UNKNOWN_ERROR");
    let unknown = sb.qt("/price-shades", json!({}));
    assert_eq!(unknown.status(), 404);
    assert!(
        unknown.text().unwrap().trim_start().starts_with('<'),
        "an HTML 404"
    );
    // Injected 503s: with and without `info`, as seen.
    sb.control(
        "/faults",
        json!({"route": "/qtickets/api/rest/v1/events", "status": 503, "count": 2}),
    );
    let bodies: Vec<Value> = (0..2)
        .map(|_| json_of(sb.qt("/events", json!({}))))
        .collect();
    assert_eq!(
        bodies.iter().filter(|b| b.get("info").is_some()).count(),
        1,
        "{bodies:?}"
    );
    assert!(bodies.iter().all(|b| b["code"] == "UNKNOWN_ERROR"));
}

#[test]
fn general_admission_baskets_hold_several_tickets_and_single_tickets_are_given_back() {
    let sb = Sb::new();
    let orders = sb.server.sandbox().qtickets_orders();
    let baskets: Vec<&Value> = orders
        .iter()
        .flat_map(|o| o["baskets"].as_array().unwrap())
        .collect();
    // (That the order's price is Σ price × quantity is checked by
    // `orders_have_the_real_type_quirks`.)
    assert!(baskets.iter().any(|b| b["quantity"].as_u64().unwrap() > 1));
    assert!(
        orders.iter().any(|o| o["payed"] == true
            && o["deleted_at"].is_null()
            && o["baskets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["deleted_at"].is_string())),
        "a basket cancelled while its order stays paid"
    );
}
