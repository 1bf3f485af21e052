//! The status page as a real browser renders it (Debian's headless Chromium).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use zakaz_core::jobs::JOBS;

use crate::Env;

/// Debian's headless Chromium on `url` with `mode` (`--dump-dom`, `--screenshot=FILE`), a
/// profile of its own under `dir`.
fn chromium(dir: &Path, mode: &[&str], url: &str) -> Output {
    let profile = dir.join("profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--virtual-time-budget=2000",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(mode)
        .arg(url)
        .env("HOME", &profile)
        // The browser is a tool here, not code under test: the shifted pass's libfaketime
        // (scripts/test.sh) stays out of it (Chromium hangs under it).
        .env_remove("LD_PRELOAD")
        .output()
        .expect("chromium (Debian's package; scripts/setup.sh installs it)");
    let _ = std::fs::remove_dir_all(&profile);
    out
}

/// A directory of the test's own for the browser's profile and screenshot.
fn scratch(addr: SocketAddr) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "zakaz-chromium-{}-{}",
        std::process::id(),
        addr.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `<tr data-job="NAME">` row of the rendered DOM, and the class of its state cell.
fn job_row<'a>(dom: &'a str, job: &str) -> Option<&'a str> {
    let start = dom.find(&format!("<tr data-job=\"{job}\">"))?;
    let end = dom[start..].find("</tr>")? + start;
    Some(&dom[start..end])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_every_job_with_its_state_in_a_real_browser() {
    let mut env = Env::new().await;
    env.seed_healthy().await;
    env.seed_run(
        "qtickets",
        "error",
        60,
        5,
        0,
        "QTickets <rejected> the token",
    )
    .await;
    // Text from ClickHouse is escaped, not markup.
    env.ch
        .execute(
            "INSERT INTO alerts (created_at, fingerprint, job, alert_type, state, title, channels) VALUES \
             (toDateTime(1781513000), 'failed_run:qtickets', 'qtickets', 'failed_run', 'firing', 'qtickets <b>failed</b>', 'telegram')",
        )
        .await
        .unwrap();
    let addr = env.start(env.config());
    let dir = scratch(addr);
    let out = chromium(&dir, &["--dump-dom"], &format!("http://{addr}/"));
    let _ = std::fs::remove_dir_all(&dir);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains("<span id=\"overall\" class=\"badge error\">error</span>"),
        "{dom}"
    );
    for job in JOBS {
        let row =
            job_row(&dom, job.name).unwrap_or_else(|| panic!("no row for {}: {dom}", job.name));
        let state = match job.name {
            "qtickets" => "<td class=\"badge error\">error</td>",
            "gmail_ingest" | "camp_queue" => "<td class=\"badge ok\">disabled</td>",
            _ => "<td class=\"badge ok\">ok</td>",
        };
        assert!(row.contains(state), "{}: {row}", job.name);
    }
    assert!(
        dom.contains("<li>qtickets &lt;b&gt;failed&lt;/b&gt;</li>"),
        "{dom}"
    );
    // A run's message is not shown (anyone may read the page): its category and id are.
    assert!(!dom.contains("rejected"), "{dom}");
    let q = job_row(&dom, "qtickets").unwrap();
    assert!(
        q.contains("qtickets-60-error") && q.contains("see run qtickets-60-error"),
        "{q}"
    );
    assert!(
        dom.contains("<tr data-source=\"vk_ads\"><td>vk_ads</td><td class=\"badge ok\">fresh</td>"),
        "{dom}"
    );
    assert!(dom.contains("name=\"viewport\""), "readable on a phone");
    assert!(
        !dom.contains(" src=") && !dom.contains("<link"),
        "no external assets"
    );
}

/// Width and height from a PNG's header (its first chunk is IHDR).
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    Some((be(16), be(20)))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pictures_render_at_phone_width_in_a_real_browser() {
    let mut env = Env::new().await;
    let page = crate::page::seed(&env).await;
    let mut config = env.config();
    config.queue = page.queue.clone();
    let addr = env.start(config);
    let url = format!("http://{addr}/");
    let dir = scratch(addr);

    // A phone's width: the page is laid out and painted as a 375 px screen shows it.
    let shot = dir.join("status.png");
    let out = chromium(
        &dir,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=375,2000",
        ],
        &url,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if let Some(keep) = std::env::var_os("ZAKAZ_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    assert_eq!(png_size(&png), Some((375, 2000)), "not a 375×2000 PNG");
    // A blank page of that size is a few kilobytes; tables, bars and charts are far more.
    assert!(png.len() > 40_000, "{} bytes: nothing drawn?", png.len());

    let out = chromium(&dir, &["--dump-dom"], &url);
    let _ = std::fs::remove_dir_all(&dir);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every picture parsed into the DOM as SVG, with its accessible name.
    for job in JOBS {
        let svg = crate::page::section(
            &dom,
            &format!("<svg class=\"timeline\" data-job=\"{}\"", job.name),
        );
        let title = crate::page::timeline_title(job.name);
        assert!(svg.contains(&format!(">{title}</title>")), "{title}: {svg}");
    }
    let qtickets = crate::page::section(&dom, "<svg class=\"timeline\" data-job=\"qtickets\"");
    for (category, title) in crate::page::qtickets_bars() {
        assert!(
            qtickets.contains(&format!("data-category=\"{category}\""))
                && qtickets.contains(&format!("<title>{title}</title>")),
            "{category}: {qtickets}"
        );
    }
    for job in JOBS {
        let Some(fresh) = job.freshness else { continue };
        let chart = crate::page::section(
            &dom,
            &format!("<svg class=\"chart\" data-source=\"{}\"", fresh.source),
        );
        assert!(
            chart.contains(&crate::page::chart_title(fresh.source)),
            "{chart}"
        );
        assert_eq!(chart.matches("<rect data-day=").count(), 30, "{chart}");
    }
    for (shard, queue, text) in crate::page::queue_rows() {
        assert!(
            dom.contains(&format!(
                "<tr data-shard=\"{shard}\" data-queue=\"{queue}\"><td>{shard}</td><td>{queue}</td><td>{text}</td>"
            )),
            "shard {shard} {queue}: {dom}"
        );
        crate::page::section(
            &dom,
            &format!("<svg class=\"age\" data-shard=\"{shard}\" data-queue=\"{queue}\""),
        );
    }
    for category in ["ok", "warnings", "error", "killed", "running", "missed"] {
        assert!(
            dom.contains(&format!("<li data-category=\"{category}\">")),
            "no legend for {category}"
        );
    }
    assert!(!dom.contains("<script") && !dom.contains(" src=") && !dom.contains("<link"));
    drop(page);
}
