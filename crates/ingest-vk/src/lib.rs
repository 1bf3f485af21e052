//! `ingest-vk`: yesterday's VK Ads statistics per banner and day, with the UTM tags that tie
//! ads to ticket sales, into `fact_vk_ads_daily`.
//!
//! A run, per account (the client itself, or each agency client of `VK_ADS_AGENCY_CLIENTS`):
//! a token from the state directory (obtained once, refreshed before it expires); ad plans,
//! ad groups and banners listed; banner-day statistics in batches of at most 200 ids over
//! the window (yesterday plus `VK_ADS_REFRESH_DAYS` earlier days, or `--since/--until`);
//! money parsed exactly; UTM from the banner URL merged with its group's (the banner wins per
//! key; a group with `enable_utm` and no `utm` gets the tags VK adds itself, [`AUTO_UTM`]);
//! the city from `utm_content=<alias>_<dd>_<mm>`; both goal counts (`base.goals`, Top@Mail.ru,
//! and `base.vk.goals`, VK pixel conversions); integers and booleans as numbers or strings. Rows replace earlier loads of the same
//! keys, and keys of the window this load did not see get zero rows: a re-run changes no
//! total. An id VK rejects is dropped from its batch (found by splitting), named, and counted
//! as a warning; an account that fails does not stop the others, but fails the run.

pub mod api;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zakaz_core::Secret;
use zakaz_core::ads::{
    Before, Stamp, accounts_or_own, date_range, each_account, held_before, label, nightly_window,
    outcome_or_partial, quote, zero_stale,
};
use zakaz_core::ch::{Ch, SplitInsert};
use zakaz_core::cli::{CommonArgs, JobCli, LoaderArgs};
use zakaz_core::error::config_error;
use zakaz_core::http::HttpClient;
use zakaz_core::journal::{Metrics, Outcome, journaled};
use zakaz_core::loose::Object;
use zakaz_core::time::{DateWindow, ch_date};
use zakaz_core::utm::{City, city_of_content, merged};

use crate::api::{VkApi, VkError};
use crate::token::Tokens;

pub const JOB: &str = "vk_ads";

/// Ids per statistics request (VK's limit).
pub const BATCH_IDS: usize = 200;
/// Days per statistics request.
const CHUNK_DAYS: u32 = 31;
/// Daily statistics reach back this many days.
const HISTORY_DAYS: u64 = 365;
/// Inserts an account's rows are spread over, by banner id (odd and even): ClickHouse sorts
/// and writes each insert's block on a thread of its own when the inserts end, so the wait
/// after the last answer is shared between cores (docs/performance.md). Each insert writes a
/// part per month, so a load makes twice the parts, which ClickHouse merges.
const INSERTS_PER_ACCOUNT: usize = 2;

/// The tags VK appends to the banner URLs of a group with `enable_utm` on and no `utm` of its
/// own (VK Ads help, "UTM-метки"; docs/vendor-facts.md): `{{campaign_id}}` is the ad group
/// (VK's old name for it), `{{banner_id}}` the banner.
pub const AUTO_UTM: &str =
    "utm_medium=cpc&utm_source=vk_ads&utm_campaign={{campaign_id}}&utm_content={{banner_id}}";

/// [`AUTO_UTM`] with its macros filled in for one banner.
pub fn auto_utm(group_id: u64, banner_id: u64) -> String {
    AUTO_UTM
        .replace("{{campaign_id}}", &group_id.to_string())
        .replace("{{banner_id}}", &banner_id.to_string())
}

/// What a group adds to its banners' URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GroupUtm {
    None,
    Text(String),
    /// `enable_utm` without text: VK's own tags.
    Auto,
}

#[derive(Debug, Parser)]
#[command(
    name = "ingest-vk",
    version,
    about = "Load daily VK Ads statistics per banner, with UTM tags and city, into ClickHouse"
)]
pub struct Cli {
    #[command(flatten)]
    pub base: LoaderArgs,
    #[command(flatten)]
    pub vk: VkArgs,

    /// Call the API and transform, print what would be written, write nothing to ClickHouse
    /// (the token file is still kept up to date).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct VkArgs {
    /// VK Ads API host (the API lives under `/api/v2`).
    #[arg(
        long,
        env = "VK_ADS_BASE_URL",
        default_value = "https://ads.vk.com",
        value_parser = zakaz_core::http::parse_base_url
    )]
    pub vk_ads_base_url: String,

    /// OAuth client id of the VK Ads cabinet.
    #[arg(long, env = "VK_ADS_CLIENT_ID")]
    pub vk_ads_client_id: String,

    /// OAuth client secret (secret).
    #[arg(long, env = "VK_ADS_CLIENT_SECRET", hide_env_values = true)]
    pub vk_ads_client_secret: Secret,

    /// Agency client usernames, comma-separated: each is loaded with its own token. Empty:
    /// the client's own account.
    #[arg(long, env = "VK_ADS_AGENCY_CLIENTS", value_delimiter = ',', num_args = 0..)]
    pub vk_ads_agency_clients: Vec<String>,

    /// Where the token pair is kept (0600). Default: systemd's `STATE_DIRECTORY` when set,
    /// else /opt/zakaz_dashboard/state.
    #[arg(long, env = "VK_ADS_STATE_DIR")]
    pub vk_ads_state_dir: Option<std::path::PathBuf>,

    /// Days before yesterday fetched again every night (VK corrects recent days).
    #[arg(long, env = "VK_ADS_REFRESH_DAYS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=60))]
    pub vk_ads_refresh_days: u32,
}

impl JobCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.base.common
    }
}

impl VkArgs {
    /// The accounts a run loads: `""` is the client's own.
    pub fn accounts(&self) -> Vec<String> {
        accounts_or_own(&self.vk_ads_agency_clients)
    }
}

/// One row of `fact_vk_ads_daily`.
#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
pub struct FactRow {
    pub stat_date: u16,
    pub account: String,
    pub ad_plan_id: u64,
    pub ad_group_id: u64,
    pub banner_id: u64,
    pub ad_plan_name: String,
    pub ad_group_name: String,
    pub banner_name: String,
    pub shows: u64,
    pub clicks: u64,
    /// `base.goals`: Top@Mail.ru counter goals.
    pub goals: u64,
    /// `base.vk.goals`: VK pixel conversions (what `v_marketing_daily` calls conversions).
    pub vk_goals: u64,
    /// Kopecks (`Decimal(18, 2)` on the wire), without VAT as VK reports it.
    pub spent: i64,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub utm_content: String,
    pub utm_term: String,
    pub city: String,
    pub loaded_at: u32,
    pub _version: u64,
}

/// A statistics answer as the loader reads it: of each item its id and its rows' date and
/// base counts (VK sends a dozen derived metrics more per row, and other keys, skipped
/// unread). Each value stays JSON, read as before: VK sends numbers as numbers or as strings;
/// a missing, `null` or `[]` object reads as one without keys, any other value fails the answer.
#[derive(Deserialize)]
struct StatisticsBody {
    items: Option<Vec<Object<StatItem>>>,
}

#[derive(Deserialize)]
struct StatItem {
    #[serde(default)]
    id: Value,
    rows: Option<Vec<Object<StatRow>>>,
}

#[derive(Deserialize)]
struct StatRow {
    #[serde(default)]
    date: Value,
    #[serde(default, deserialize_with = "zakaz_core::loose::object")]
    base: StatBase,
}

#[derive(Deserialize, Default)]
struct StatBase {
    #[serde(default)]
    shows: Value,
    #[serde(default)]
    clicks: Value,
    #[serde(default)]
    goals: Value,
    #[serde(default)]
    spent: Value,
    #[serde(default, deserialize_with = "zakaz_core::loose::object")]
    vk: StatVk,
}

#[derive(Deserialize, Default)]
struct StatVk {
    #[serde(default)]
    goals: Value,
}

/// [`FactRow`] as written: its text borrowed from the banner's description.
#[derive(Debug, clickhouse::Row, Serialize)]
struct FactRowRef<'a> {
    stat_date: u16,
    account: &'a str,
    ad_plan_id: u64,
    ad_group_id: u64,
    banner_id: u64,
    ad_plan_name: &'a str,
    ad_group_name: &'a str,
    banner_name: &'a str,
    shows: u64,
    clicks: u64,
    goals: u64,
    vk_goals: u64,
    spent: i64,
    utm_source: &'a str,
    utm_medium: &'a str,
    utm_campaign: &'a str,
    utm_content: &'a str,
    utm_term: &'a str,
    city: &'a str,
    loaded_at: u32,
    _version: u64,
}

const COLUMNS: &[&str] = &[
    "stat_date",
    "account",
    "ad_plan_id",
    "ad_group_id",
    "banner_id",
    "ad_plan_name",
    "ad_group_name",
    "banner_name",
    "shows",
    "clicks",
    "goals",
    "vk_goals",
    "spent",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "city",
    "loaded_at",
    "_version",
];

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let clock = cli.base.clock.clock();
    let window = nightly_window(&cli.base.window, &clock, cli.vk.vk_ads_refresh_days)?;
    let oldest = clock.moscow_today() - chrono::Days::new(HISTORY_DAYS);
    if window.from < oldest {
        return Err(config_error(format!(
            "`--since` {}: VK Ads keeps daily statistics for {HISTORY_DAYS} days, so the window must start on {oldest} or later",
            window.from
        )));
    }
    if cli.vk.vk_ads_client_id.trim().is_empty() {
        return Err(config_error("`VK_ADS_CLIENT_ID` is empty"));
    }
    let timeout = zakaz_core::jobs::get(JOB)
        .timeout()
        .unwrap_or(Duration::from_secs(600));
    let http = HttpClient::new("VK Ads", &cli.base.http)?
        .with_deadline(Instant::now() + timeout.saturating_sub(Duration::from_secs(20)));
    let state_dir = zakaz_core::state::resolve_dir(
        cli.vk.vk_ads_state_dir.as_deref(),
        std::env::var("STATE_DIRECTORY").ok().as_deref(),
    );
    zakaz_core::state::check_usable(
        &state_dir,
        &[token::FILE, token::LOCK_FILE],
        "VK_ADS_STATE_DIR",
    )?;
    let tokens = Arc::new(Tokens::new(
        http.clone(),
        &cli.vk.vk_ads_base_url,
        cli.vk.vk_ads_client_id.trim(),
        cli.vk.vk_ads_client_secret.clone(),
        &state_dir,
    ));
    let api = VkApi::new(http, &cli.vk.vk_ads_base_url, tokens.clone(), clock);
    let accounts = cli.vk.accounts();
    // A dry run needs no ClickHouse: it reads nothing there and writes nothing.
    if cli.dry_run {
        let outcome = Loader::new(&api, None, &tokens, window)
            .run(&accounts)
            .await?;
        outcome.print()?;
        return Ok(());
    }
    let ch = Ch::connect(&cli.base.clickhouse).await?;
    zakaz_core::schema::ensure(&ch).await?;
    let job = zakaz_core::jobs::get(JOB);
    let (api, ch_ref, tokens, accounts) = (&api, &ch, &tokens, &accounts);
    journaled(&ch, job, Some(window), |_run_id| async move {
        Loader::new(api, Some(ch_ref), tokens, window)
            .run(accounts)
            .await
    })
    .await?;
    Ok(())
}

/// What one account's load produced.
#[derive(Debug, Default)]
struct AccountLoad {
    rows: usize,
    banners: usize,
    rejected_ids: Vec<u64>,
    unknown_cities: BTreeMap<String, u64>,
    spent: i64,
}

/// One run; without ClickHouse (`ch: None`) a dry run.
pub struct Loader<'a> {
    api: &'a VkApi,
    ch: Option<&'a Ch>,
    tokens: &'a Tokens,
    window: DateWindow,
    stamp: Stamp,
}

/// The listing facts a banner's rows carry.
struct BannerInfo {
    plan_id: u64,
    group_id: u64,
    plan_name: String,
    group_name: String,
    name: String,
    tags: [String; 5],
    city: City,
}

impl<'a> Loader<'a> {
    pub fn new(api: &'a VkApi, ch: Option<&'a Ch>, tokens: &'a Tokens, window: DateWindow) -> Self {
        Loader {
            api,
            ch,
            tokens,
            window,
            stamp: Stamp::now(),
        }
    }

    pub async fn run(self, accounts: &[String]) -> anyhow::Result<Outcome> {
        let this = &self;
        let (loads, failures) =
            // One account at a time: they share the client's token file and rate limits.
            each_account("account", accounts, 1, |a| async move {
                this.account(&a).await
            })
            .await?;
        let rows: usize = loads.iter().map(|(_, l)| l.rows).sum();
        let rejected: Vec<u64> = loads
            .iter()
            .flat_map(|(_, l)| l.rejected_ids.clone())
            .collect();
        let mut unknown_cities: BTreeMap<String, u64> = BTreeMap::new();
        for (_, l) in &loads {
            for (alias, n) in &l.unknown_cities {
                *unknown_cities.entry(alias.clone()).or_default() += n;
            }
        }
        let by_account: BTreeMap<String, u64> = loads
            .iter()
            .map(|(a, l)| (label(a), l.rows as u64))
            .collect();
        let events = *self.tokens.events.lock().unwrap();
        let metrics = Metrics::new()
            .with("rows", rows)
            .with("rows_by_account", by_account)
            .with(
                "banners",
                loads.iter().map(|(_, l)| l.banners).sum::<usize>(),
            )
            .with("rejected_ids", rejected.len())
            .with("unknown_city_aliases", unknown_cities.values().sum::<u64>())
            .with(zakaz_core::journal::WARNINGS, rejected.len())
            .with("failed_accounts", failures.len())
            .with("tokens_minted", events.minted)
            .with("tokens_refreshed", events.refreshed)
            .with("token_limit_recoveries", events.limit_recoveries)
            .with("http_requests", self.api.requests_made());
        let mut message = format!(
            "{rows} banner-day rows for {} ({} account(s)), spent {}",
            self.window,
            loads.len(),
            zakaz_core::money::format_kopecks(loads.iter().map(|(_, l)| l.spent).sum())
        );
        if !rejected.is_empty() {
            message.push_str(&format!(
                "; VK rejected banner id(s) {} (dropped from their batch, the rest loaded)",
                rejected
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        if !unknown_cities.is_empty() {
            message.push_str(&format!(
                "; unknown city alias(es) in utm_content kept as is: {}",
                unknown_cities
                    .iter()
                    .map(|(a, n)| format!("{a} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.ch.is_none() {
            message = format!("dry run, nothing written: would write {message}");
        }
        let outcome = Outcome {
            rows: rows as u64,
            message,
            metrics,
        };
        outcome_or_partial("VK Ads account(s)", accounts.len(), failures, outcome)
    }

    async fn account(&self, account: &str) -> anyhow::Result<AccountLoad> {
        let mut banners = self.banners(account).await?;
        let listed: std::collections::BTreeSet<u64> = banners.keys().copied().collect();
        // Banners with spend in the window that the listing no longer shows (deleted since):
        // their statistics are asked for too, so real spend is not zeroed; a banner VK no
        // longer knows at all is rejected below and its rows zeroed.
        let scope = format!(
            "account = {} AND {}",
            quote(account),
            date_range("stat_date", self.window)
        );
        let mut before = Before::Held;
        if let Some(ch) = self.ch {
            for (id, info) in previously_loaded(ch, account, self.window).await? {
                banners.entry(id).or_insert(info);
            }
            before = held_before(ch, "fact_vk_ads_daily", &scope).await?;
        }
        let mut load = AccountLoad {
            banners: listed.len(),
            ..Default::default()
        };
        for info in banners.values() {
            if let City::Unknown(alias) = &info.city {
                *load.unknown_cities.entry(alias.clone()).or_default() += 1;
            }
        }
        let ids: Vec<u64> = banners.keys().copied().collect();
        // Rows stream into the account's inserts, committed once every batch is in: memory
        // stays bounded on long windows, and a failure mid-way writes nothing below ClickHouse's
        // block size (~a million rows an insert; beyond, the first blocks stay until a re-run
        // replaces them; so may one insert's rows when another fails as they commit).
        let mut insert = self
            .ch
            .map(|ch| ch.split_insert::<FactRowRef<'_>>("fact_vk_ads_daily", INSERTS_PER_ACCOUNT));
        let batches: Vec<(DateWindow, &[u64])> = self
            .window
            .chunks(CHUNK_DAYS)
            .into_iter()
            .flat_map(|dates| ids.chunks(BATCH_IDS).map(move |batch| (dates, batch)))
            .collect();
        let batches = &batches;
        let fetch = |i: usize| async move {
            match batches.get(i) {
                Some(&(dates, batch)) => self.statistics(account, batch, dates).await.map(Some),
                None => Ok(None),
            }
        };
        // One request at a time, as before, in a pipeline of three: while the next batch is
        // asked for, this batch's answers are parsed (on blocking threads) and the batch
        // before's rows are written.
        let mut fetched = fetch(0).await?;
        let mut items: Vec<StatItem> = Vec::new();
        for i in 1.. {
            let answers = fetched.take().map(|(answers, rejected)| {
                load.rejected_ids.extend(rejected);
                answers
            });
            let done = answers.is_none();
            let read = async {
                match answers {
                    Some(answers) => read_statistics(answers).await,
                    None => Ok(Vec::new()),
                }
            };
            let next = async { if done { Ok(None) } else { fetch(i).await } };
            let write = self.write_rows(account, &items, &banners, insert.as_mut(), &mut load);
            let (written, next, read) = tokio::join!(write, next, read);
            // In the order of the batches: what this batch's answer lacks is told before a
            // failure of the request after it.
            written?;
            items = read?;
            fetched = next?;
            if done {
                break;
            }
        }
        // A banner only the stored rows knew, which VK rejects, is gone: no warning, zeroed.
        let (gone, rejected): (Vec<u64>, Vec<u64>) = std::mem::take(&mut load.rejected_ids)
            .into_iter()
            .partition(|id| !listed.contains(id));
        load.rejected_ids = rejected;
        if !gone.is_empty() {
            tracing::info!(account = %label(account), banners = ?gone, "VK Ads no longer knows these deleted banners: their rows of the window are zeroed");
        }
        if let (Some(insert), Some(ch)) = (insert, self.ch) {
            insert.end().await.map_err(|e| {
                e.context(format!(
                    "VK Ads account {}: some banners' rows of {} may be written, none zeroed: re-run this window",
                    label(account),
                    self.window
                ))
            })?;
            zero_stale(
                ch,
                "fact_vk_ads_daily",
                COLUMNS,
                &["shows", "clicks", "goals", "vk_goals", "spent"],
                &scope,
                self.stamp,
                before,
            )
            .await?;
        }
        tracing::info!(account = %label(account), rows = load.rows, banners = load.banners, "VK Ads account loaded");
        Ok(load)
    }

    /// Every banner of the account with what its rows carry: plan and group names, the
    /// merged UTM tags, the city.
    async fn banners(&self, account: &str) -> anyhow::Result<BTreeMap<u64, BannerInfo>> {
        let mut plans: HashMap<u64, String> = HashMap::new();
        for p in self
            .api
            .list(account, "ad_plans.json", "id,name,status")
            .await?
        {
            plans.insert(id_of(&p, "ad plan", "id")?, text(&p, "name"));
        }
        // id → (plan id, name, what the group adds to its banners' URLs).
        let mut groups: HashMap<u64, (u64, String, GroupUtm)> = HashMap::new();
        for g in self
            .api
            .list(
                account,
                "ad_groups.json",
                "id,name,status,ad_plan_id,utm,enable_utm",
            )
            .await?
        {
            let id = id_of(&g, "ad group", "id")?;
            let enabled = zakaz_core::loose::boolean(&g["enable_utm"])
                .map_err(|e| anyhow::anyhow!("VK Ads ad group {id}: `enable_utm`: {e}"))?
                .unwrap_or(false);
            let utm = g["utm"].as_str().unwrap_or_default().trim();
            let group_utm = match (enabled, utm.is_empty()) {
                (false, _) => GroupUtm::None,
                (true, true) => GroupUtm::Auto,
                (true, false) => GroupUtm::Text(utm.to_owned()),
            };
            let plan_id = optional_id(&g, "ad group", id, "ad_plan_id")?;
            groups.insert(id, (plan_id, text(&g, "name"), group_utm));
        }
        let mut out = BTreeMap::new();
        for b in self
            .api
            .list(account, "banners.json", "id,name,status,ad_group_id,urls")
            .await?
        {
            let id = id_of(&b, "banner", "id")?;
            let group_id = optional_id(&b, "banner", id, "ad_group_id")?;
            let (plan_id, group_name, group_utm) =
                groups
                    .get(&group_id)
                    .cloned()
                    .unwrap_or((0, String::new(), GroupUtm::None));
            let url = b["urls"]["primary"]["url"].as_str().unwrap_or_default();
            let group_tags = match group_utm {
                GroupUtm::None => None,
                GroupUtm::Text(t) => Some(t),
                GroupUtm::Auto => Some(auto_utm(group_id, id)),
            };
            let tags = merged(url, group_tags.as_deref());
            // `utm_content=<alias>_<dd>_<mm>` names the city; VK's own tags put the banner id
            // there, so the names are asked next (as Direct's campaign names are).
            let city = match city_of_content(&tags[3]) {
                City::None => [
                    text(&b, "name"),
                    group_name.clone(),
                    plans.get(&plan_id).cloned().unwrap_or_default(),
                ]
                .iter()
                .map(|n| zakaz_core::utm::city_in_name(n))
                .find(|c| *c != City::None)
                .unwrap_or(City::None),
                city => city,
            };
            out.insert(
                id,
                BannerInfo {
                    plan_id,
                    group_id,
                    plan_name: plans.get(&plan_id).cloned().unwrap_or_default(),
                    group_name,
                    name: text(&b, "name"),
                    tags,
                    city,
                },
            );
        }
        Ok(out)
    }

    /// The rows of `items` (one statistics batch) into `insert`, counted in `load`.
    async fn write_rows<'b>(
        &self,
        account: &'b str,
        items: &[StatItem],
        banners: &'b BTreeMap<u64, BannerInfo>,
        mut insert: Option<&mut SplitInsert<FactRowRef<'b>>>,
        load: &mut AccountLoad,
    ) -> anyhow::Result<()> {
        for item in items {
            for row in rows_of(account, item, banners, self.window, self.stamp)? {
                load.rows += 1;
                load.spent += row.spent;
                if let Some(insert) = insert.as_mut() {
                    insert.write(row.banner_id, &row).await?;
                }
            }
            // Let the next request's answer be read meanwhile.
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// The statistics answers of `ids` over `dates`, unparsed (several when VK rejected an id
    /// and the batch was asked again in halves), and the ids VK rejects. VK fails a whole
    /// request for one id it does not know (and need not say which): the batch is split until
    /// the bad ids are alone, they are dropped, and the rest is loaded.
    async fn statistics(
        &self,
        account: &str,
        ids: &[u64],
        dates: DateWindow,
    ) -> anyhow::Result<(Vec<StatisticsAnswer>, Vec<u64>)> {
        let mut pending: Vec<&[u64]> = vec![ids];
        let mut answers = Vec::new();
        // Banners VK rejects.
        let mut rejected = Vec::new();
        while let Some(part) = pending.pop() {
            let query = [
                (
                    "id",
                    part.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("date_from", dates.from.to_string()),
                ("date_to", dates.to.to_string()),
                ("metrics", "base".to_owned()),
            ];
            match self.api.get_text(account, STATISTICS_PATH, &query).await {
                Ok(text) => answers.push(StatisticsAnswer {
                    asked: part.to_vec(),
                    dates,
                    text,
                }),
                Err(VkError::WrongIds { code }) if part.len() == 1 => {
                    tracing::warn!(account = %label(account), banner_id = part[0], "VK Ads rejects banner {} ({code}): dropped, the rest of its batch is loaded", part[0]);
                    rejected.push(part[0]);
                }
                Err(VkError::WrongIds { .. }) => {
                    let (a, b) = part.split_at(part.len() / 2);
                    pending.push(b);
                    pending.push(a);
                }
                Err(VkError::Other(e)) => return Err(e),
            }
        }
        Ok((answers, rejected))
    }
}

const STATISTICS_PATH: &str = "statistics/banners/day.json";

/// A statistics answer as it came, with what it was asked for.
struct StatisticsAnswer {
    asked: Vec<u64>,
    dates: DateWindow,
    text: String,
}

/// The items of a batch's answers, parsed (only what the rows need) and checked: an answer
/// without its items, or without an item for every id asked, is no proof of zero — loading
/// it would zero the window.
async fn read_statistics(answers: Vec<StatisticsAnswer>) -> anyhow::Result<Vec<StatItem>> {
    let mut items = Vec::new();
    for StatisticsAnswer { asked, dates, text } in answers {
        // On a thread of its own: meanwhile the next batch is asked for and the one before
        // written.
        let mut got = tokio::task::spawn_blocking(move || statistics_items(&text))
            .await
            .map_err(|e| match e.try_into_panic() {
                Ok(panic) => zakaz_core::panic::into_error(panic),
                Err(e) => {
                    anyhow::anyhow!("reading VK Ads' answer for `{STATISTICS_PATH}` stopped: {e}")
                }
            })?
            .map_err(|e| {
                e.context(format!(
                    "VK Ads statistics for {dates}: nothing of this account is written"
                ))
            })?;
        let ids: std::collections::BTreeSet<u64> = got
            .iter()
            .filter_map(|i| zakaz_core::loose::uint(&i.id).ok().flatten())
            .collect();
        if let Some(missing) = asked.iter().find(|id| !ids.contains(id)) {
            anyhow::bail!(
                "VK Ads left banner {missing} out of its statistics for {dates}: nothing of this account is written"
            );
        }
        items.append(&mut got);
    }
    Ok(items)
}

/// The items of one statistics answer.
fn statistics_items(text: &str) -> anyhow::Result<Vec<StatItem>> {
    let body: StatisticsBody = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "VK Ads answered statistics that cannot be read ({e}): invalid JSON, not the documented shape, or cut off"
        )
    })?;
    let items = body.items.ok_or_else(|| {
        anyhow::anyhow!(
            "VK Ads answered statistics without `items`: {}",
            zakaz_core::http::body_excerpt(text)
        )
    })?;
    Ok(items.into_iter().map(|Object(item)| item).collect())
}

/// Banners of `account` with anything loaded in `window`, as their newest rows describe them.
async fn previously_loaded(
    ch: &Ch,
    account: &str,
    window: DateWindow,
) -> anyhow::Result<Vec<(u64, BannerInfo)>> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Stored {
        banner_id: u64,
        ad_plan_id: u64,
        ad_group_id: u64,
        ad_plan_name: String,
        ad_group_name: String,
        banner_name: String,
        tags: (String, String, String, String, String),
        city: String,
    }
    let sql = format!(
        "SELECT banner_id, argMax(ad_plan_id, _version), argMax(ad_group_id, _version), \
                argMax(ad_plan_name, _version), argMax(ad_group_name, _version), argMax(banner_name, _version), \
                (argMax(utm_source, _version), argMax(utm_medium, _version), argMax(utm_campaign, _version), \
                 argMax(utm_content, _version), argMax(utm_term, _version)), argMax(city, _version) \
         FROM fact_vk_ads_daily FINAL WHERE account = {} AND {} AND (shows > 0 OR clicks > 0 OR spent != 0) \
         GROUP BY banner_id",
        quote(account),
        date_range("stat_date", window)
    );
    let sql = sql.as_str();
    let rows: Vec<Stored> = ch
        .read("banners loaded before", |c| async move {
            c.query(sql).fetch_all::<Stored>().await
        })
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let (source, medium, campaign, content, term) = r.tags;
            let city = if r.city.is_empty() {
                City::None
            } else {
                City::Known(r.city)
            };
            (
                r.banner_id,
                BannerInfo {
                    plan_id: r.ad_plan_id,
                    group_id: r.ad_group_id,
                    plan_name: r.ad_plan_name,
                    group_name: r.ad_group_name,
                    name: r.banner_name,
                    tags: [source, medium, campaign, content, term],
                    city,
                },
            )
        })
        .collect())
}

/// The fact rows of one statistics item (a banner's days) within `window`.
fn rows_of<'a>(
    account: &'a str,
    item: &StatItem,
    banners: &'a BTreeMap<u64, BannerInfo>,
    window: DateWindow,
    stamp: Stamp,
) -> anyhow::Result<Vec<FactRowRef<'a>>> {
    let id = zakaz_core::loose::uint(&item.id)
        .ok()
        .flatten()
        .ok_or_else(|| {
            anyhow::anyhow!("VK Ads statistics item without a numeric id: {}", item.id)
        })?;
    let Some(info) = banners.get(&id) else {
        anyhow::bail!("VK Ads sent statistics for banner {id}, which was not asked for");
    };
    let Some(rows) = &item.rows else {
        anyhow::bail!("VK Ads statistics of banner {id} came without `rows`");
    };
    let mut out = Vec::with_capacity(rows.len());
    for Object(row) in rows {
        let date: NaiveDate = row
            .date
            .as_str()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("banner {id}: a statistics row without a date"))?;
        if !window.contains(date) {
            continue;
        }
        let base = &row.base;
        let count = |v: &Value, k: &str| -> anyhow::Result<u64> {
            zakaz_core::loose::uint(v)
                .map(Option::unwrap_or_default)
                .map_err(|e| anyhow::anyhow!("banner {id} {date}: `{k}`: {e}"))
        };
        let spent = match &base.spent {
            Value::Null => 0,
            Value::String(s) => zakaz_core::money::parse_kopecks(s)
                .map_err(|e| anyhow::anyhow!("banner {id} {date}: `spent`: {e}"))?,
            // A number is read through its decimal text, never as a float.
            Value::Number(n) => zakaz_core::money::parse_kopecks(&n.to_string())
                .map_err(|e| anyhow::anyhow!("banner {id} {date}: `spent`: {e}"))?,
            other => anyhow::bail!("banner {id} {date}: `spent` is `{other}`"),
        };
        let [source, medium, campaign, content, term] = &info.tags;
        out.push(FactRowRef {
            stat_date: ch_date(date),
            account,
            ad_plan_id: info.plan_id,
            ad_group_id: info.group_id,
            banner_id: id,
            ad_plan_name: &info.plan_name,
            ad_group_name: &info.group_name,
            banner_name: &info.name,
            shows: count(&base.shows, "shows")?,
            clicks: count(&base.clicks, "clicks")?,
            goals: count(&base.goals, "goals")?,
            vk_goals: count(&base.vk.goals, "vk.goals")?,
            spent,
            utm_source: source,
            utm_medium: medium,
            utm_campaign: campaign,
            utm_content: content,
            utm_term: term,
            city: info.city.name(),
            loaded_at: stamp.loaded_at,
            _version: stamp.version,
        });
    }
    Ok(out)
}

/// An object's required id (a number or a numeric string).
fn id_of(v: &Value, what: &str, key: &str) -> anyhow::Result<u64> {
    match zakaz_core::loose::uint(&v[key]) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => anyhow::bail!(
            "VK Ads: an item of the {what} listing has no `{key}`: {}",
            zakaz_core::http::body_excerpt(&v.to_string())
        ),
        Err(e) => anyhow::bail!("VK Ads: an item of the {what} listing has `{key}` {e}"),
    }
}

/// An object's reference to another (0 when absent; an error when malformed).
fn optional_id(v: &Value, what: &str, id: u64, key: &str) -> anyhow::Result<u64> {
    zakaz_core::loose::uint(&v[key])
        .map(Option::unwrap_or_default)
        .map_err(|e| anyhow::anyhow!("VK Ads {what} {id}: `{key}`: {e}"))
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn banner_7() -> BTreeMap<u64, BannerInfo> {
        [(
            7,
            BannerInfo {
                plan_id: 1,
                group_id: 2,
                plan_name: String::new(),
                group_name: String::new(),
                name: String::new(),
                tags: Default::default(),
                city: City::Unknown(String::new()),
            },
        )]
        .into()
    }

    const WINDOW: DateWindow = DateWindow {
        from: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
    };

    /// The rows of a statistics answer's items, as the loader would write them.
    fn rows_in(answer: Value) -> anyhow::Result<Vec<(u16, u64, u64, i64)>> {
        let banners = banner_7();
        let stamp = Stamp {
            loaded_at: 1,
            version: 1,
        };
        let mut out = Vec::new();
        for item in statistics_items(&answer.to_string())? {
            for r in rows_of("", &item, &banners, WINDOW, stamp)? {
                out.push((r.stat_date, r.shows, r.vk_goals, r.spent));
            }
        }
        Ok(out)
    }

    #[test]
    fn an_item_or_row_sent_as_a_list_fails_the_answer_instead_of_being_read_by_position() {
        // Read by position, `[7, []]` would be banner 7 without rows: its spend zeroed.
        for answer in [
            json!({"items": [[7, []]]}),
            json!({"items": [{"id": 7, "rows": [["2026-11-21"]]}]}),
            json!({"items": [{"id": 7, "rows": [{"date": "2026-11-21", "base": [1, 2, 3, 4]}]}]}),
        ] {
            let e = rows_in(answer.clone()).unwrap_err().to_string();
            assert!(e.contains("cannot be read"), "{answer}: {e}");
        }
    }

    #[test]
    fn a_missing_null_or_empty_list_base_reads_as_zero_counts() {
        let day = ch_date(NaiveDate::from_ymd_opt(2026, 11, 21).unwrap());
        for base in [json!(null), json!([]), json!({})] {
            let answer =
                json!({"items": [{"id": "7", "rows": [{"date": "2026-11-21", "base": base}]}]});
            assert_eq!(rows_in(answer).unwrap(), vec![(day, 0, 0, 0)], "{base}");
        }
        let answer = json!({"items": [{"id": 7, "rows": [{"date": "2026-11-21"},
            {"date": "2026-11-22", "base": {"shows": "5", "spent": "1.5", "vk": []}},
            {"date": "2026-11-23", "base": {"shows": 6, "spent": 2, "vk": {"goals": "3"}}}]}]});
        let next = |d: u16, n: u16| d + n;
        assert_eq!(
            rows_in(answer).unwrap(),
            vec![
                (day, 0, 0, 0),
                (next(day, 1), 5, 0, 150),
                (next(day, 2), 6, 3, 200)
            ]
        );
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "[0-9]{0,22}(\\.[0-9]{0,4})?".prop_map(Value::from),
            "2026-11-2[0-9]".prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
        ];
        let keys = prop::sample::select(vec![
            "id", "rows", "date", "base", "shows", "clicks", "goals", "spent", "vk", "total",
        ]);
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Any statistics item: rows of the window, or an error naming the field; never a
        /// panic, never more rows than the item has.
        #[test]
        fn a_statistics_item_is_read_totally(item in any_json(), id in prop_oneof![Just(7u64), any::<u64>()]) {
            let mut item = item;
            if let Value::Object(m) = &mut item {
                m.insert("id".into(), json!(id));
            }
            let (banners, window) = (banner_7(), WINDOW);
            let stamp = Stamp { loaded_at: 1, version: 1 };
            // An item of another shape fails the answer as it is read.
            if let Ok(read) = serde_json::from_value::<StatItem>(item.clone())
                && let Ok(rows) = rows_of("", &read, &banners, window, stamp)
            {
                let n = item.get("rows").and_then(Value::as_array).map_or(0, Vec::len);
                prop_assert!(rows.len() <= n);
            }
        }
    }
}
