//! Test and benchmark support: a queue deployment of its own on real MariaDB servers — the
//! system one (127.0.0.1:3306) and the extra instances `scripts/mariadb-shards.sh` starts —
//! driven through the real `camp-queue` binary and read with the `mariadb` client. Used by
//! this crate's tests, the end-to-end tests and the benchmark (not by the jobs).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use zakaz_core::testing::output_ok;

/// The MariaDB servers shards are spread over: the system one first.
pub fn servers() -> Vec<u16> {
    let extra = std::env::var("ZAKAZ_SHARD_PORTS").unwrap_or_else(|_| "3316 3317".to_owned());
    let mut ports = vec![3306];
    ports.extend(
        extra
            .split_whitespace()
            .map(|p| p.parse::<u16>().expect("ZAKAZ_SHARD_PORTS: ports")),
    );
    ports
}

/// A deployment of its own: ppcdict on the system server, shard N on server (N − 1) mod k of
/// `ports`; its databases are dropped with it.
pub struct TestStand {
    /// The `camp-queue` binary the commands run.
    pub binary: PathBuf,
    pub prefix: String,
    pub shards: u32,
    pub ports: Vec<u16>,
    /// Extra environment for every command (e.g. `CAMP_QUEUE_COPY_WORKERS`).
    pub env: Vec<(String, String)>,
}

impl TestStand {
    /// Shards spread over every server of [`servers`].
    pub fn new(binary: impl Into<PathBuf>, shards: u32) -> TestStand {
        TestStand::on(binary, shards, servers())
    }

    /// Shards spread over `ports` (ppcdict stays on the system server).
    pub fn on(binary: impl Into<PathBuf>, shards: u32, ports: Vec<u16>) -> TestStand {
        for &port in &ports {
            let ok = Command::new("mariadb-admin")
                .args([
                    "--no-defaults",
                    "-h127.0.0.1",
                    "-uroot",
                    &format!("-P{port}"),
                    "ping",
                ])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                ok,
                "no MariaDB at 127.0.0.1:{port}: run `scripts/mariadb-shards.sh start` first"
            );
        }
        // Unique per process and stand: tests run in parallel, several stands per process.
        let prefix = format!("cqt_{}", zakaz_core::testing::unique_suffix());
        let stand = TestStand {
            binary: binary.into(),
            prefix,
            shards,
            ports,
            env: Vec::new(),
        };
        stand.ok(&["migrate"]);
        stand
    }

    pub fn port_of(&self, shard: u32) -> u16 {
        self.ports[(shard as usize - 1) % self.ports.len()]
    }

    pub fn shard_db(&self, shard: u32) -> String {
        format!("{}_ppc{shard}", self.prefix)
    }

    pub fn dict_db(&self) -> String {
        format!("{}_dict", self.prefix)
    }

    pub fn shard_dsns(&self) -> String {
        (1..=self.shards)
            .map(|s| {
                format!(
                    "mysql://root@127.0.0.1:{}/{}",
                    self.port_of(s),
                    self.shard_db(s)
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `PPCDICT_DSN` and `PPC_SHARD_DSNS` of this deployment (for other binaries' tests).
    pub fn dsn_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "PPCDICT_DSN",
                format!("mysql://root@127.0.0.1:3306/{}", self.dict_db()),
            ),
            ("PPC_SHARD_DSNS", self.shard_dsns()),
        ]
    }

    /// `camp-queue` with a clean environment pointed at this deployment.
    pub fn command(&self) -> Command {
        let mut cmd = zakaz_core::testing::clean_command(&self.binary);
        cmd.envs(self.dsn_env())
            .env("LOG_LEVEL", "info")
            .env("CAMP_QUEUE_POLL_MS", "100");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("camp-queue runs")
    }

    /// Run and require exit 0; returns stdout + stderr.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = output_ok(self.command().args(args));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Run and require exit 0; returns stdout only.
    pub fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&output_ok(self.command().args(args)).stdout).into_owned()
    }

    /// A worker draining what is due as of `now`.
    pub fn drain(&self, shard: u32, par_id: &str, now: &str) -> String {
        self.ok(&[
            "--now",
            now,
            "run",
            "--shard",
            &shard.to_string(),
            "--par-id",
            par_id,
            "--once",
        ])
    }

    pub fn spawn(&self, args: &[&str]) -> Worker {
        let mut child = self
            .command()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("camp-queue starts");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    fn mariadb(&self, port: u16, db: &str, sql: &str) -> String {
        let out = output_ok(Command::new("mariadb").args([
            "--no-defaults",
            "-h127.0.0.1",
            "-uroot",
            &format!("-P{port}"),
            "-N",
            "-B",
            "-e",
            sql,
            db,
        ]));
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }

    /// A query on a shard, tab-separated rows.
    pub fn sql(&self, shard: u32, sql: &str) -> String {
        self.mariadb(self.port_of(shard), &self.shard_db(shard), sql)
    }

    pub fn dict(&self, sql: &str) -> String {
        self.mariadb(3306, &self.dict_db(), sql)
    }

    pub fn count(&self, shard: u32, sql: &str) -> u64 {
        self.sql(shard, sql)
            .parse()
            .unwrap_or_else(|_| panic!("not a count: {sql}"))
    }

    pub fn set_prop(&self, name: &str, value: &str) {
        self.dict(&format!(
            "REPLACE INTO ppc_properties (name, value) VALUES ('{name}', '{}')",
            value.replace('\'', "''")
        ));
    }

    /// The connection id holding a worker identity's named lock on a shard's server, if any
    /// (`IS_USED_LOCK`).
    pub fn lock_holder(&self, shard: u32, par_id: &str) -> Option<u64> {
        let lane: crate::queue::Lane = par_id.parse().expect("a par-id");
        let name = crate::worker::lock_name(&self.shard_db(shard), lane);
        self.sql(shard, &format!("SELECT IS_USED_LOCK('{name}')"))
            .trim()
            .parse()
            .ok()
    }

    /// `KILL` the connection holding a worker's named lock (what a server restart, a proxy
    /// failover or `wait_timeout` do to it), and wait (bounded) until the server has released
    /// the lock. Returns the killed connection id.
    pub fn kill_lock_connection(&self, shard: u32, par_id: &str) -> u64 {
        let holder = self
            .lock_holder(shard, par_id)
            .unwrap_or_else(|| panic!("nobody holds the lock of shard {shard} {par_id}"));
        self.sql(shard, &format!("KILL {holder}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.lock_holder(shard, par_id) == Some(holder) {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock of shard {shard} {par_id} is still held by killed connection {holder}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        holder
    }

    /// A SQL session on a shard that stays open between statements (to hold row locks
    /// while a worker runs).
    pub fn session(&self, shard: u32) -> Session {
        Session::open(self.port_of(shard), &self.shard_db(shard))
    }

    /// The `done` events of a shard's copy queue: (cid, worker), in order.
    pub fn done(&self, shard: u32) -> Vec<(u64, String)> {
        self.sql(shard, "SELECT cid, worker FROM camp_queue_history WHERE queue = 'copy' AND event = 'done' ORDER BY id")
            .lines()
            .map(|l| {
                let (cid, w) = l.split_once('\t').unwrap();
                (cid.parse().unwrap(), w.to_owned())
            })
            .collect()
    }
}

impl Drop for TestStand {
    fn drop(&mut self) {
        for s in 1..=self.shards {
            let _ = Command::new("mariadb")
                .args([
                    "--no-defaults",
                    "-h127.0.0.1",
                    "-uroot",
                    &format!("-P{}", self.port_of(s)),
                ])
                .args([
                    "-e",
                    &format!("DROP DATABASE IF EXISTS `{}`", self.shard_db(s)),
                ])
                .output();
        }
        let _ = Command::new("mariadb")
            .args(["--no-defaults", "-h127.0.0.1", "-uroot", "-P3306"])
            .args([
                "-e",
                &format!("DROP DATABASE IF EXISTS `{}`", self.dict_db()),
            ])
            .output();
    }
}

/// A running worker whose stderr lines the test reads.
pub struct Worker {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Worker {
    /// Wait (bounded) for a line containing `text`.
    pub fn wait_for(&mut self, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
            return l.clone();
        }
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with `{text}` within 60 s; saw:\n{}",
            self.seen.join("\n")
        );
    }

    /// Wait (bounded) for the process to exit; returns its status code and every line.
    pub fn wait_exit(&mut self) -> (i32, String) {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return (status.code().unwrap_or(-1), self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the worker did not exit within 60 s; saw:\n{}",
            self.seen.join("\n")
        );
    }

    /// SIGUSR1: a worker frozen by `--pause-at` goes on.
    pub fn resume(&self) {
        self.signal("USR1");
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIG{name} was delivered");
    }

    /// Every line seen so far (after draining what has arrived).
    pub fn lines_so_far(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }

    /// SIGTERM, as systemd stops a unit.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `mariadb` client session kept open: statements run one after another on one
/// connection, so a test can hold locks (`BEGIN; SELECT … FOR UPDATE`) while a worker runs.
pub struct Session {
    child: Child,
    stdin: std::process::ChildStdin,
    out: mpsc::Receiver<String>,
    next: u32,
}

impl Session {
    fn open(port: u16, db: &str) -> Session {
        let mut child = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                "-uroot",
                &format!("-P{port}"),
                "-N",
                "-B",
                "--unbuffered",
                db,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mariadb starts");
        let stdin = child.stdin.take().unwrap();
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Session {
            child,
            stdin,
            out: rx,
            next: 0,
        }
    }

    /// Run statements (`;`-separated) and wait (bounded) until they are done; returns their
    /// output. A failing statement ends the session, and the test with it.
    pub fn exec(&mut self, sql: &str) -> String {
        use std::io::Write as _;
        self.next += 1;
        let marker = format!("__session_done_{}__", self.next);
        writeln!(self.stdin, "{sql};\nSELECT '{marker}';").expect("the session is open");
        self.stdin.flush().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut out = Vec::new();
        loop {
            let left = deadline
                .checked_duration_since(std::time::Instant::now())
                .unwrap_or_else(|| panic!("`{sql}` did not finish within 60 s"));
            match self.out.recv_timeout(left) {
                Ok(line) if line == marker => return out.join("\n"),
                Ok(line) if line.starts_with("ERROR") => panic!("`{sql}`: {line}"),
                Ok(line) => out.push(line),
                Err(_) => panic!("`{sql}` did not finish within 60 s: {}", out.join("\n")),
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
