//! `alerts` end to end: the real binary, real ClickHouse, `api-sandbox`'s Telegram, and a real
//! SMTP server (Python's aiosmtpd, writing a Maildir).

mod channels;
mod checks;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use api_sandbox::{SandboxConfig, Server};
use zakaz_core::ch::Ch;
use zakaz_core::testing::{JobUnderTest, TestDb, query_tsv};

pub struct Smtp {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
}

/// An aiosmtpd server that asks for a login (`user`, `password`) over plain text.
const SMTP_WITH_LOGIN: &str = r#"
import sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult
port, maildir, user, password = sys.argv[1:5]
def text(v):
    return v.decode() if isinstance(v, bytes) else v
def check(server, session, envelope, mechanism, auth_data):
    ok = text(auth_data.login) == user and text(auth_data.password) == password
    return AuthResult(success=ok, handled=False)
# start() gives up (and this process ends, its port already open) when the server does not
# answer its own probe within ready_timeout (5 s by default): generous, for a busy machine.
# "ready" says start() returned.
Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port), authenticator=check,
           auth_require_tls=False, auth_required=True, ready_timeout=120).start()
print("ready", flush=True)
# Not time.sleep: under libfaketime (the shifted test pass) its absolute monotonic deadline
# is refused (EINVAL) and the server ended right after starting. A wait without a deadline.
threading.Event().wait()
"#;

impl Smtp {
    pub fn start() -> Smtp {
        Smtp::spawn(None)
    }

    /// A server that takes mail only after a login with `user` and `password`.
    pub fn with_login(user: &str, password: &str) -> Smtp {
        Smtp::spawn(Some((user, password)))
    }

    fn spawn(login: Option<(&str, &str)>) -> Smtp {
        let port = free_port();
        let maildir =
            std::env::temp_dir().join(format!("zakaz-smtp-{}-{port}", std::process::id()));
        let mut cmd = Command::new("python3");
        match login {
            None => {
                cmd.args([
                    "-m",
                    "aiosmtpd",
                    "-n",
                    "-l",
                    &format!("127.0.0.1:{port}"),
                    "-c",
                    "aiosmtpd.handlers.Mailbox",
                ])
                .arg(&maildir);
            }
            Some((user, password)) => {
                cmd.args(["-c", SMTP_WITH_LOGIN, &port.to_string()])
                    .arg(&maildir)
                    .args([user, password]);
            }
        }
        // The login script says when it serves (below); the plain server's output is not read.
        let mut child = cmd
            .stdout(if login.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (scripts/setup.sh installs it)");
        let stdout = child.stdout.take();
        // Dropping it kills and reaps the server, whatever happens next.
        let smtp = Smtp {
            child,
            port,
            maildir,
        };
        if let Some(stdout) = stdout {
            // The script's own word that it serves (an open port alone is not: its start-up
            // probe may still fail and end it); end of file if it ended instead.
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                .expect("read the SMTP server's start-up line");
            assert_eq!(
                line.trim(),
                "ready",
                "aiosmtpd did not start on port {port}"
            );
            return smtp;
        }
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return smtp;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("aiosmtpd did not start on port {port}");
    }

    /// Every message received so far, as text (quoted-printable decoded).
    pub fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.maildir.join("new"))
            .map(|d| {
                d.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                    .map(|b| quoted_printable(&b))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// Undo quoted-printable: soft line breaks and `=XX` escapes.
fn quoted_printable(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'=' if raw.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if raw.get(i + 1) == Some(&b'\r') => i += 3,
            b'=' => match std::str::from_utf8(raw.get(i + 1..i + 3).unwrap_or_default())
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                }
                None => {
                    out.push(b'=');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Env {
    pub sandbox: Server,
    pub db: TestDb,
    pub ch: Ch,
    pub smtp: Smtp,
    /// `ALERTS_STATE_DIR` of this test.
    pub state_dir: PathBuf,
    /// `SYSTEMD_UNIT_DIRS`: every job installed, these enabled (the loaders included).
    pub units: zakaz_core::testing::UnitDir,
    /// The instant the alerts runs of this test act as of (`--now`), and the seeds' "now":
    /// one clock for both, so no assertion depends on the time of day.
    pub now: i64,
}

/// 2026-12-01 15:30:00 UTC (18:30 in Moscow): the instant every test acts as of.
pub const PINNED_NOW: i64 = 1_796_139_000;

/// The jobs the tests treat as switched on.
pub const ENABLED: &[&str] = &["qtickets", "vk_ads", "direct", "alerts", "healthcheck"];

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

impl Env {
    pub async fn new() -> Env {
        let (db, ch) = TestDb::migrated().await;
        let state_dir = std::env::temp_dir().join(format!("zakaz-alerts-state-{}", db.name));
        std::fs::create_dir_all(&state_dir).unwrap();
        Env {
            sandbox: Server::start_local(SandboxConfig::default()).unwrap(),
            db,
            ch,
            smtp: Smtp::start(),
            state_dir,
            units: zakaz_core::testing::UnitDir::enabling(ENABLED),
            // A pinned instant, not the wall clock: the seeds, `--now` and every expectation
            // follow from it.
            now: PINNED_NOW,
        }
    }

    /// `sql` with every `now()` meaning [`Env::now`].
    pub fn at_now(&self, sql: &str) -> String {
        sql.replace("now()", &self.now_sql())
    }

    /// [`Env::now`] as a ClickHouse expression, for seeds.
    pub fn now_sql(&self) -> String {
        format!("toDateTime({})", self.now)
    }

    pub fn telegram(&self) -> Vec<String> {
        self.sandbox
            .sandbox()
            .state()
            .telegram_messages
            .iter()
            .map(|m| m.text.clone())
            .collect()
    }

    pub fn query(&self, sql: &str) -> String {
        query_tsv(&sql.replace("{db}", &format!("`{}`", self.db.name)))
    }

    /// A run of `job` that started `ago` seconds ago with this status (`running` runs get a
    /// deadline `deadline_in` seconds from now).
    pub async fn seed_run(
        &self,
        job: &str,
        status: &str,
        ago: i64,
        deadline_in: i64,
        message: &str,
    ) {
        let finished = if status == "running" {
            "NULL".to_owned()
        } else {
            format!("{} - {}", self.now_sql(), ago - 5)
        };
        self.ch
            .execute(&format!(
                "INSERT INTO meta_job_run_events (job, run_id, seq, status, started_at, finished_at, deadline_at, rows_processed, message, metrics, host, pid) \
                 SELECT '{job}', '{job}-{ago}-{status}', {seq}, '{status}', {now} - {ago}, {finished}, {now} + {deadline_in}, 1, '{message}', '{{}}', 'test', 1",
                now = self.now_sql(),
                seq = u8::from(status != "running"),
                message = message.replace('\'', "\\'"),
            ))
            .await
            .unwrap();
    }

    /// Data of `source` whose latest date is `days_behind` days before today (Moscow).
    pub async fn seed_fresh(&self, source: &str, days_behind: u32) {
        let sql = match source {
            "qtickets" => format!(
                "INSERT INTO fact_qtickets_sales_daily (sales_date, event_id, city, tickets_sold, _version) SELECT toDate(now(), 'Europe/Moscow') - {days_behind}, 1, 'Москва', 1, 1"
            ),
            "vk_ads" => format!(
                "INSERT INTO fact_vk_ads_daily (stat_date, ad_plan_id, _version) SELECT toDate(now(), 'Europe/Moscow') - {days_behind}, 1, 1"
            ),
            "direct" => format!(
                "INSERT INTO fact_direct_daily (stat_date, client_login, _version) SELECT toDate(now(), 'Europe/Moscow') - {days_behind}, 'a', 1"
            ),
            other => panic!("no seed for {other}"),
        };
        let sql = self.at_now(&sql);
        self.ch.execute(&sql).await.unwrap();
    }

    /// Every enabled job ran recently and every source is fresh.
    pub async fn seed_healthy(&self) {
        for job in ["qtickets", "vk_ads", "direct"] {
            self.seed_run(job, "ok", 600, -300, "fine").await;
        }
        self.seed_fresh("qtickets", 0).await;
        self.seed_fresh("vk_ads", 1).await;
        self.seed_fresh("direct", 1).await;
    }
}

impl JobUnderTest for Env {
    fn command(&self, args: &[&str]) -> Command {
        let now = chrono::DateTime::from_timestamp(self.now, 0).unwrap();
        let mut cmd = self.db.command(env!("CARGO_BIN_EXE_alerts"));
        cmd.args(args)
            .arg(format!("--now={}", now.to_rfc3339()))
            .env(
                "TELEGRAM_API_URL",
                format!("{}/telegram", self.sandbox.base_url),
            )
            .env("TELEGRAM_BOT_TOKEN", "sandbox-token")
            // Enablement from a unit directory of the test's, never the host's /etc.
            .env("SYSTEMD_UNIT_DIRS", &self.units.path)
            .env("ALERTS_STATE_DIR", &self.state_dir)
            .env("TELEGRAM_CHAT_ID", "-100123")
            .env("SMTP_HOST", "127.0.0.1")
            .env("SMTP_PORT", self.smtp.port.to_string())
            .env("SMTP_STARTTLS", "false")
            .env("ALERT_EMAIL_TO", "duty@example.org")
            .env("ALERT_EMAIL_FROM", "alerts@example.org")
            // The tests read English; the Russian default has a test of its own.
            .env("ALERTS_LANGUAGE", "en");
        cmd
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
