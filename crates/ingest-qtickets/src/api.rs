//! The QTickets REST API as the loader uses it: list calls are GET requests with a JSON body
//! (query strings are ignored by the real service), paging follows `perPage/total` and stops
//! on an empty or short page, and nothing but GET is ever sent (a POST marks tickets scanned).

use serde_json::{Value, json};
use zakaz_core::Secret;
use zakaz_core::error::ConfigError;
use zakaz_core::http::{HttpClient, body_excerpt};

use crate::model::RawOrder;

#[derive(Clone)]
pub struct QTickets {
    http: HttpClient,
    base: String,
    token: Secret,
}

/// One page of a list: its rows and the server's paging numbers, when it sent them (a page
/// without `paging` says nothing about what follows: only an empty page ends the list).
pub struct Page<T = Value> {
    pub data: Vec<T>,
    pub per_page: Option<usize>,
    pub total: Option<usize>,
}

impl Page {
    fn of(path: &str, mut answer: Value) -> anyhow::Result<Page> {
        let data = answer
            .get_mut("data")
            .and_then(Value::as_array_mut)
            .map(std::mem::take);
        Page::with(path, data, answer.get("paging"))
    }
}

/// An order page as the loader reads it: the orders typed (see [`RawOrder`]), `paging` as
/// sent, everything else skipped.
#[derive(serde::Deserialize)]
struct OrdersAnswer {
    #[serde(default, deserialize_with = "list_or_none")]
    data: Option<Vec<RawOrder>>,
    #[serde(default)]
    paging: Option<Value>,
}

/// `data`: a list of orders, or `None` for anything else (an answer without its list).
fn list_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<RawOrder>>, D::Error> {
    use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct ListOrNone;
    impl<'de> Visitor<'de> for ListOrNone {
        type Value = Option<Vec<RawOrder>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of orders")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut orders = Vec::with_capacity(seq.size_hint().unwrap_or(50));
            while let Some(zakaz_core::loose::Object(order)) = seq.next_element()? {
                orders.push(order);
            }
            Ok(Some(orders))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        other_values_are!(Option<Vec<RawOrder>>, None);
    }
    d.deserialize_any(ListOrNone)
}

impl<T> Page<T> {
    fn with(path: &str, data: Option<Vec<T>>, paging: Option<&Value>) -> anyhow::Result<Self> {
        let data = data
            .ok_or_else(|| anyhow::anyhow!("QTickets: `{path}` answered without a `data` list"))?;
        let num = |k: &str| {
            paging
                .and_then(|p| p.get(k))
                .and_then(Value::as_u64)
                .map(|n| n as usize)
        };
        Ok(Page {
            per_page: num("perPage"),
            total: num("total"),
            data,
        })
    }

    /// A short page (fewer rows than the page size) is the last one.
    fn short(&self) -> bool {
        self.per_page.is_some_and(|p| self.data.len() < p)
    }

    /// The last page of a keyset listing (`where id > last`): empty, short, or holding every
    /// row the filter matches.
    pub fn is_last_keyset(&self) -> bool {
        self.data.is_empty() || self.short() || self.total.is_some_and(|t| self.data.len() >= t)
    }

    /// The last page of a numbered listing: empty, short, or page `ceil(total/perPage)`.
    pub fn is_last_numbered(&self, page_no: usize) -> bool {
        let pages = match (self.total, self.per_page) {
            (Some(t), Some(p)) => Some(t.div_ceil(p.max(1))),
            _ => None,
        };
        self.data.is_empty() || self.short() || pages.is_some_and(|n| page_no >= n)
    }
}

impl QTickets {
    pub fn new(http: HttpClient, base: &str, token: Secret) -> Self {
        QTickets {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    pub fn requests_made(&self) -> u32 {
        self.http.requests_made()
    }

    /// `GET {path}` with a JSON body; the answer parsed, vendor errors turned into one line.
    pub async fn get(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.get_with(path, body, |text| serde_json::from_str(text))
            .await
    }

    /// The same, the answer read by `parse`.
    async fn get_with<T>(
        &self,
        path: &str,
        body: &Value,
        parse: impl FnOnce(&str) -> serde_json::Result<T>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .send(|c| {
                c.get(&url)
                    .bearer_auth(self.token.expose())
                    .header("Accept", "application/json")
                    .json(body)
            })
            .await?;
        let status = response.status().as_u16();
        let text = zakaz_core::http::text_limited(
            "QTickets",
            response,
            zakaz_core::http::MAX_JSON_ANSWER_BYTES,
        )
        .await?;
        match status {
            200 => parse(&text).map_err(|e| {
                anyhow::anyhow!("QTickets answered invalid JSON for `{path}` ({e}): not JSON, not the documented shape, or cut off")
            }),
            401 | 403 => Err(ConfigError(format!(
                "QTickets rejected the token (HTTP {status}) for `{path}`: check `QTICKETS_TOKEN`"
            ))
            .into()),
            404 if text.trim_start().starts_with('<') => Err(ConfigError(format!(
                "QTickets has no route `{path}` (HTML 404): check `QTICKETS_BASE_URL`"
            ))
            .into()),
            _ => Err(anyhow::anyhow!(
                "QTickets answered HTTP {status} for `{path}`: {}",
                body_excerpt(&text)
            )),
        }
    }

    /// One page of a list endpoint.
    pub async fn page(&self, path: &str, body: &Value) -> anyhow::Result<Page> {
        Page::of(path, self.get(path, body).await?)
    }

    /// One page of orders, each read only as far as the transform looks (see [`RawOrder`]).
    async fn orders_page(&self, body: &Value) -> anyhow::Result<Page<RawOrder>> {
        let answer: OrdersAnswer = self
            .get_with("/orders", body, |text| serde_json::from_str(text))
            .await?;
        Page::with("/orders", answer.data, answer.paging.as_ref())
    }

    /// Every row of a list that pages by `page` (events, clients): stops at
    /// `ceil(total/perPage)` pages, or earlier on an empty or short page.
    pub async fn all_pages(&self, path: &str, filters: Value) -> anyhow::Result<Vec<Value>> {
        let mut rows = Vec::new();
        let mut previous_first: Option<Value> = None;
        for page_no in 1.. {
            let mut body = filters.clone();
            body["page"] = json!(page_no);
            let page = self.page(path, &body).await?;
            // A server that ignores `page` (and sends no `paging`) answers page 1 forever.
            let first = page.data.first().and_then(|o| o.get("id")).cloned();
            if first.is_some() && first == previous_first {
                anyhow::bail!(
                    "QTickets answered page {page_no} of `{path}` with the same rows as page {}: it ignores `page`",
                    page_no - 1
                );
            }
            previous_first = first;
            let last = page.is_last_numbered(page_no);
            rows.extend(page.data);
            if last {
                break;
            }
        }
        Ok(rows)
    }

    /// Orders with `id > after` (and `id < before`), ascending, one page: keyset paging.
    /// `extra` conditions are added to `where`.
    pub async fn orders_after(
        &self,
        after: u64,
        before: Option<u64>,
        extra: &[Value],
    ) -> anyhow::Result<Page<RawOrder>> {
        let mut conditions = vec![json!({"column": "id", "operator": ">", "value": after})];
        if let Some(before) = before {
            conditions.push(json!({"column": "id", "operator": "<", "value": before}));
        }
        conditions.extend(extra.iter().cloned());
        let page = self
            .orders_page(&json!({"where": conditions, "orderBy": {"id": "asc"}, "page": 1}))
            .await?;
        // A server that ignored the id filter would loop forever: refuse it.
        if let Some(bad) = page
            .data
            .iter()
            .filter_map(|o| o.id.as_u64())
            .find(|id| *id <= after || before.is_some_and(|b| *id >= b))
        {
            anyhow::bail!(
                "QTickets ignored the `id` filter (order {bad} outside the requested range)"
            );
        }
        Ok(page)
    }

    /// The newest order id, or 0 when there are no orders; `known` is an id known to exist
    /// (a previous run's newest, or 0). Found with id filters only: the real service refuses
    /// an unfiltered order listing (503 `UNKNOWN_ERROR`, recorded by the original project).
    /// Probes (`id > x`, one page each) gallop up from `known` until nothing is beyond, then
    /// bisect; a short page holds the newest order and ends the search at once. One request
    /// when nothing is new; about 2·log2 of the ids past `known` otherwise.
    pub async fn max_order_id(&self, known: u64) -> anyhow::Result<u64> {
        // Every id is at most `above` once it is set; `have` is an id at or below the newest.
        let (mut have, mut above) = (known, None::<u64>);
        let mut step = 1024u64;
        // Bounded: galloping doubles the step, bisecting halves the gap (ids are u64).
        for _ in 0..256 {
            let probe = match above {
                Some(a) if a <= have => return Ok(have),
                Some(a) => have + (a - have) / 2,
                None => have,
            };
            let page = self.orders_after(probe, None, &[]).await?;
            let newest = page.data.iter().filter_map(|o| o.id.as_u64()).max();
            match newest {
                None if probe == have => return Ok(have),
                None => above = Some(probe),
                Some(id) if page.is_last_keyset() => return Ok(id),
                Some(id) => {
                    have = id;
                    if above.is_none() {
                        // More beyond a full page: look far ahead next.
                        let far = have.saturating_add(step);
                        step = step.saturating_mul(2);
                        let ahead = self.orders_after(far, None, &[]).await?;
                        match ahead.data.iter().filter_map(|o| o.id.as_u64()).max() {
                            None => above = Some(far),
                            Some(id) if ahead.is_last_keyset() => return Ok(id),
                            Some(id) => have = id,
                        }
                    }
                }
            }
        }
        anyhow::bail!("QTickets: the newest order id was not found within 256 requests")
    }

    /// The orders with these ids, ascending, over as many pages as the server makes of them;
    /// and the ids it did not return.
    pub async fn orders_with_ids(&self, ids: &[u64]) -> anyhow::Result<(Vec<RawOrder>, Vec<u64>)> {
        let mut orders: Vec<RawOrder> = Vec::with_capacity(ids.len());
        // Bounded: a page beyond the ids asked for is empty (or the server ignores `page`,
        // which the repeat check below stops).
        for page_no in 1..=ids.len().max(1) {
            let page = self
                .orders_page(
                    &json!({"where": [{"column": "id", "operator": "in", "value": ids}], "orderBy": {"id": "asc"}, "page": page_no}),
                )
                .await?;
            let got: Vec<u64> = page.data.iter().filter_map(|o| o.id.as_u64()).collect();
            if let Some(bad) = got.iter().find(|id| !ids.contains(id)) {
                anyhow::bail!(
                    "QTickets ignored the `id in` filter (order {bad} was not asked for)"
                );
            }
            let repeated = got
                .first()
                .is_some_and(|first| orders.iter().any(|o| o.id.as_u64() == Some(*first)));
            let last = page.is_last_numbered(page_no) || repeated;
            if !repeated {
                orders.extend(page.data);
            }
            if last || orders.len() >= ids.len() {
                break;
            }
        }
        let returned: std::collections::BTreeSet<u64> =
            orders.iter().filter_map(|o| o.id.as_u64()).collect();
        let missing = ids
            .iter()
            .copied()
            .filter(|id| !returned.contains(id))
            .collect();
        Ok((orders, missing))
    }

    /// The first order with `id >= id`, as (id, created_at text).
    async fn first_from(&self, id: u64) -> anyhow::Result<Option<(u64, String)>> {
        let page = self.orders_after(id.saturating_sub(1), None, &[]).await?;
        Ok(page
            .data
            .first()
            .and_then(|o| Some((o.id.as_u64()?, o.created_at.as_str()?.to_owned()))))
    }

    /// The smallest order id created at or after `since` (Unix seconds). Order ids grow with
    /// creation time, so a binary search over ids needs only id filters, which the real
    /// service honours (date filters are not to be relied on).
    pub async fn first_id_created_since(&self, since: i64, max_id: u64) -> anyhow::Result<u64> {
        let (mut lo, mut hi) = (1u64, max_id + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.first_from(mid).await? {
                None => hi = mid,
                Some((id, created)) => {
                    let t = zakaz_core::time::parse_offset_timestamp(&created)
                        .map_err(|e| anyhow::anyhow!("order {id}: `created_at`: {e}"))?
                        .timestamp();
                    if t >= since {
                        hi = mid.min(id);
                    } else {
                        lo = id + 1;
                    }
                }
            }
        }
        Ok(lo)
    }

    pub async fn seats(&self, show_id: u64) -> anyhow::Result<Value> {
        let answer = self
            .get(
                &format!("/shows/{show_id}/seats"),
                &json!({"select": ["id", "zone_id", "admission", "max_quantity", "free_quantity", "payed_quantity", "disabled"], "flat": true}),
            )
            .await?;
        answer
            .get("data")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("QTickets: seats of show {show_id} came without `data`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(text: &str) -> anyhow::Result<Page<RawOrder>> {
        let answer: OrdersAnswer = serde_json::from_str(text)?;
        Page::with("/orders", answer.data, answer.paging.as_ref())
    }

    #[test]
    fn an_order_page_keeps_its_orders_and_paging_and_skips_the_rest() {
        let p = page(
            r#"{"data": [{"id": 7, "x": {"deep": [1]}}, {"id": "8"}], "paging": {"perPage": 50, "total": 2}, "meta": [1]}"#,
        )
        .unwrap();
        assert_eq!(p.data.len(), 2);
        assert_eq!(
            (p.data[0].id.as_u64(), p.data[1].id.as_str()),
            (Some(7), Some("8"))
        );
        assert_eq!((p.per_page, p.total), (Some(50), Some(2)));
        assert!(p.is_last_keyset());
    }

    #[test]
    fn an_answer_without_a_list_of_orders_is_an_error() {
        for text in [
            r#"{"data": null}"#,
            r#"{"data": {"id": 7}}"#,
            r#"{"data": "x"}"#,
            "{}",
        ] {
            let e = page(text).err().unwrap().to_string();
            assert!(e.contains("without a `data` list"), "{text}: {e}");
        }
        // An order that is not an object is never read by position.
        for text in [r#"{"data": [[7, 1001]]}"#, r#"{"data": [7]}"#] {
            let e = page(text).err().unwrap().to_string();
            assert!(e.contains("expected an object"), "{text}: {e}");
        }
    }
}
