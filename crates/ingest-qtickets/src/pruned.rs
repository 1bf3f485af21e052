//! Order pages read only as far as the transform looks (see [`zakaz_core::pruned`]): an
//! order's personal data, custom fields, integrations and the like are skipped as they are
//! read, never built into a tree.

use serde_json::Value;
use zakaz_core::pruned::Shape;

/// An order as [`crate::model::transform_order`] and the paging read it.
static ORDER: Shape = Shape::Object {
    keys: &[
        ("id", Shape::Whole),
        ("event_id", Shape::Whole),
        ("payed", Shape::Whole),
        ("payed_at", Shape::Whole),
        ("created_at", Shape::Whole),
        ("updated_at", Shape::Whole),
        ("deleted_at", Shape::Whole),
        ("utm", Shape::Whole),
        // Of the client, only the e-mail (hashed with a salt, when one is configured).
        (
            "client",
            Shape::Object {
                keys: &[("email", Shape::Whole)],
                others: false,
            },
        ),
        ("price", Shape::Whole),
        ("original_price", Shape::Whole),
        ("currency_id", Shape::Whole),
        ("baskets", Shape::Items(&BASKET)),
    ],
    others: false,
};

static BASKET: Shape = Shape::Object {
    keys: &[
        ("id", Shape::Whole),
        ("show_id", Shape::Whole),
        ("seat_id", Shape::Whole),
        ("seat_name", Shape::Whole),
        ("price", Shape::Whole),
        ("original_price", Shape::Whole),
        ("discount_value", Shape::Whole),
        ("quantity", Shape::Whole),
        ("refunded_at", Shape::Whole),
        ("refunded_amount", Shape::Whole),
        ("deleted_at", Shape::Whole),
    ],
    others: false,
};

/// A page: its orders pruned, everything else (`paging`, an error) as sent.
static PAGE: Shape = Shape::Object {
    keys: &[("data", Shape::Items(&ORDER))],
    others: true,
};

/// An order page's answer, its orders pruned.
pub fn orders_page(text: &str) -> serde_json::Result<Value> {
    zakaz_core::pruned::from_str(text, &PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_order_keeps_what_the_transform_reads_as_sent_and_drops_the_rest() {
        let order = json!({
            "id": "7", "event_id": 3, "payed": "1", "payed_at": "2025-05-01T12:00:00+03:00",
            "created_at": null, "utm": [], "price": 12.5, "currency_id": "RUB",
            "client": {"email": "A@b.c", "phone": "+7 900", "name": "Иван"},
            "baskets": [{"id": 1, "show_id": 2, "price": "5,5", "quantity": null,
                         "client_name": "Иван", "barcode": "123", "refunds": [{"x": 1}]},
                        "odd"],
            "card_mask": "4111", "custom": {"deep": [1, 2, {"a": 1}]}, "ip": "1.2.3.4",
        });
        let page = json!({"data": [order, 5], "paging": {"perPage": 50}});
        assert_eq!(
            orders_page(&page.to_string()).unwrap(),
            json!({"data": [
                {
                    "id": "7", "event_id": 3, "payed": "1",
                    "payed_at": "2025-05-01T12:00:00+03:00", "created_at": null, "utm": [],
                    "price": 12.5, "currency_id": "RUB", "client": {"email": "A@b.c"},
                    "baskets": [{"id": 1, "show_id": 2, "price": "5,5", "quantity": null},
                                "odd"],
                },
                5,
            ], "paging": {"perPage": 50}})
        );
    }
}
