//! The status page as a real browser renders it (Debian's headless Chromium).

use std::process::Command;

use zakaz_core::jobs::JOBS;

use crate::Env;

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
    let profile = std::env::temp_dir().join(format!(
        "zakaz-chromium-{}-{}",
        std::process::id(),
        addr.port()
    ));
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=2000",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("http://{addr}/"),
        ])
        .env("HOME", &profile)
        // The browser is a tool here, not code under test: the shifted pass's libfaketime
        // (scripts/test.sh) stays out of it (Chromium hangs under it).
        .env_remove("LD_PRELOAD")
        .output()
        .expect("chromium (Debian's package; scripts/setup.sh installs it)");
    let _ = std::fs::remove_dir_all(&profile);
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
