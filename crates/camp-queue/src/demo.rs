//! `camp-queue demo-data`: a reproducible set of clients and campaigns on every shard. Run
//! twice, it leaves the same rows: the demo clients' campaigns (and copies made for them),
//! queued jobs and accumulated copy time are reset first.

use anyhow::Context as _;
use chrono::NaiveDateTime;
use sqlx::{MySql, QueryBuilder};

use crate::db::Deployment;

/// The shape of the demo data.
#[derive(Debug, Clone, Copy)]
pub struct Demo {
    pub clients: u64,
    pub campaigns: u64,
    pub banners: u64,
    pub phrases: u64,
}

impl Demo {
    /// Client `c` (1-based) lives on shard `(c − 1) mod S + 1`.
    pub fn shard_of(&self, client: u64, shards: u32) -> u32 {
        ((client - 1) % u64::from(shards)) as u32 + 1
    }
    /// The cid of campaign `j` (1-based) of client `c`.
    pub fn cid(&self, client: u64, j: u64) -> u64 {
        (client - 1) * self.campaigns + j
    }
    /// Every third campaign has money left (and so cannot be deleted).
    pub fn has_money(j: u64) -> bool {
        j.is_multiple_of(3)
    }
}

pub async fn load(dep: &Deployment, demo: Demo, now: NaiveDateTime) -> anyhow::Result<String> {
    let shards = dep.shards.len() as u32;
    let max_cid = demo.clients * demo.campaigns;
    // Copies made for demo clients got cids above the demo range.
    sqlx::query("DELETE FROM shard_inc_cid WHERE ClientID BETWEEN 1 AND ? AND cid > ?")
        .bind(demo.clients)
        .bind(max_cid)
        .execute(&dep.ppcdict)
        .await
        .context("resetting ppcdict.shard_inc_cid")?;
    // Whatever holds the demo's cids now (an earlier demo of another shape, copies made since)
    // makes way.
    for shard in &dep.shards {
        for sql in [
            "DELETE FROM camp_operations_queue WHERE cid BETWEEN 1 AND ?",
            "DELETE FROM camp_operations_queue_copy WHERE cid BETWEEN 1 AND ?",
            "DELETE FROM phrases WHERE cid BETWEEN 1 AND ?",
            "DELETE FROM banners WHERE cid BETWEEN 1 AND ?",
            "DELETE FROM campaigns WHERE cid BETWEEN 1 AND ?",
        ] {
            sqlx::query(sql)
                .bind(max_cid)
                .execute(&shard.pool)
                .await
                .with_context(|| format!("clearing the demo's cids on shard {}", shard.number))?;
        }
    }
    for client in 1..=demo.clients {
        let shard = dep.shard(demo.shard_of(client, shards))?;
        sqlx::query("REPLACE INTO shard_client_id (ClientID, shard) VALUES (?, ?)")
            .bind(client)
            .bind(shard.number)
            .execute(&dep.ppcdict)
            .await?;
        let mut tx = shard.pool.begin().await?;
        for sql in [
            "DELETE q FROM camp_operations_queue q JOIN campaigns c ON c.cid = q.cid WHERE c.ClientID = ?",
            "DELETE FROM camp_operations_queue_copy WHERE ClientID = ? OR new_ClientID = ?",
            "DELETE p FROM phrases p JOIN campaigns c ON c.cid = p.cid WHERE c.ClientID = ?",
            "DELETE b FROM banners b JOIN campaigns c ON c.cid = b.cid WHERE c.ClientID = ?",
            "DELETE FROM campaigns WHERE ClientID = ?",
        ] {
            let mut q = sqlx::query(sql).bind(client);
            if sql.contains("OR new_ClientID") {
                q = q.bind(client);
            }
            q.execute(&mut *tx)
                .await
                .context("resetting the demo client's rows")?;
        }
        sqlx::query("REPLACE INTO clients (ClientID, name) VALUES (?, ?)")
            .bind(client)
            .bind(format!("Demo client {client}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query("REPLACE INTO clients_options (ClientID, camp_copy_ela, camp_copy_ela_at) VALUES (?, 0, NULL)")
            .bind(client)
            .execute(&mut *tx)
            .await?;
        let js: Vec<u64> = (1..=demo.campaigns).collect();
        for chunk in js.chunks(1000) {
            let mut allocator: QueryBuilder<MySql> =
                QueryBuilder::new("REPLACE INTO shard_inc_cid (cid, ClientID) ");
            allocator.push_values(chunk, |mut row, &j| {
                row.push_bind(demo.cid(client, j)).push_bind(client);
            });
            allocator
                .build()
                .execute(&dep.ppcdict)
                .await
                .context("writing shard_inc_cid")?;
            let mut campaigns: QueryBuilder<MySql> = QueryBuilder::new(
                "INSERT INTO campaigns (cid, ClientID, name, type, statusArchived, statusShow, sum, sum_spent, LastChange) ",
            );
            campaigns.push_values(chunk, |mut row, &j| {
                let money = Demo::has_money(j);
                row.push_bind(demo.cid(client, j))
                    .push_bind(client)
                    .push_bind(format!("Client {client} campaign {j}"))
                    .push_bind("text")
                    .push_bind("No")
                    .push_bind("Yes")
                    .push_bind(if money { "1000" } else { "0" })
                    .push_bind(if money { "250" } else { "0" })
                    .push_bind(now);
            });
            campaigns
                .build()
                .execute(&mut *tx)
                .await
                .context("writing demo campaigns")?;
            let banners: Vec<(u64, u64)> = chunk
                .iter()
                .flat_map(|&j| (1..=demo.banners).map(move |b| (demo.cid(client, j), b)))
                .collect();
            for part in banners.chunks(1000) {
                let mut insert: QueryBuilder<MySql> =
                    QueryBuilder::new("INSERT INTO banners (bid, cid, title, body, href) ");
                insert.push_values(part, |mut row, &(cid, b)| {
                    row.push_bind((cid - 1) * demo.banners + b)
                        .push_bind(cid)
                        .push_bind(format!("Tickets {cid}/{b}"))
                        .push_bind("Concerts and shows, buy online")
                        .push_bind(format!("https://example.ru/c{cid}/b{b}"));
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .context("writing demo banners")?;
            }
            let phrases: Vec<(u64, u64, u64)> = banners
                .iter()
                .flat_map(|&(cid, b)| (1..=demo.phrases).map(move |p| (cid, b, p)))
                .collect();
            for part in phrases.chunks(1000) {
                let mut insert: QueryBuilder<MySql> =
                    QueryBuilder::new("INSERT INTO phrases (ph_id, cid, bid, phrase, price) ");
                insert.push_values(part, |mut row, &(cid, b, p)| {
                    let bid = (cid - 1) * demo.banners + b;
                    row.push_bind((bid - 1) * demo.phrases + p)
                        .push_bind(cid)
                        .push_bind(bid)
                        .push_bind(format!("concert tickets {p}"))
                        .push_bind(format!("{}.{:02}", 1 + p % 20, (cid * 7 + p) % 100));
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .context("writing demo phrases")?;
            }
        }
        tx.commit().await?;
    }
    Ok(format!(
        "demo data: {} clients over {shards} shards, {} campaigns each ({} banners × {} phrases), cids 1..{max_cid}",
        demo.clients, demo.campaigns, demo.banners, demo.phrases
    ))
}
