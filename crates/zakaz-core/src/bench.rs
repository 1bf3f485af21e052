//! What the benchmarks share: the release binaries they drive, a sandbox in its own process
//! (so that its work is not counted against the loader), peak memory of a child, the order in
//! which a repetition runs its sides, and repetitions summarised as median and spread.
//!
//! Every figure is printed in one form, which `scripts/bench.sh --check` reads and
//! docs/performance.md quotes: `bench <name> <figure> <median> (<min>–<max>) n=<n>`
//! ([`figure`], [`ratio`]).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A release binary of the workspace, next to the benchmark executable (`scripts/bench.sh`
/// builds it first).
pub fn release_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    // target/release/deps/<bench> → target/release/<name>
    let path = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/release")
        .join(name);
    assert!(
        path.exists(),
        "build it first: cargo build --release --bin {name}"
    );
    path
}

/// `api-sandbox` in a process of its own on a free loopback port; killed on drop.
pub struct SandboxProcess {
    child: Child,
    pub base_url: String,
}

impl SandboxProcess {
    pub fn start(args: &[&str]) -> SandboxProcess {
        let mut child = Command::new(release_binary("api-sandbox"))
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
            .args(args)
            .env_clear()
            .stdout(Stdio::piped())
            .spawn()
            .expect("api-sandbox starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("api-sandbox prints its URLs");
        let urls: serde_json::Value = serde_json::from_str(&line).expect("a JSON line of URLs");
        SandboxProcess {
            child,
            base_url: urls["base_url"].as_str().expect("base_url").to_owned(),
        }
    }

    /// `POST /_sandbox{path}` with a JSON body.
    pub fn control(&self, path: &str, body: &serde_json::Value) {
        crate::testing::post_json(
            &format!("{}/_sandbox{path}", self.base_url),
            &body.to_string(),
        )
        .unwrap_or_else(|e| panic!("control {path}: {e}"));
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `cmd` to its end; its exit status, peak resident memory (KiB, `VmHWM`) and duration.
pub fn run_measuring_peak(mut cmd: Command) -> (ExitStatus, u64, Duration) {
    let started = Instant::now();
    let mut child = cmd.spawn().expect("the command starts");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kb: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return (status, peak_kb, started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Repetitions of one measurement.
#[derive(Debug, Clone)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        assert!(!values.is_empty(), "at least one repetition");
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len().is_multiple_of(2) {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        };
        Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        }
    }

    /// `1234 (1200–1300) n=5`.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.*} ({:.*}–{:.*}) n={}",
            decimals, self.median, decimals, self.min, decimals, self.max, self.n
        )
    }
}

/// Print one figure of benchmark `name` — `bench <name> <figure> <median> (<min>–<max>)
/// n=<n>` — and return its spread. `figure` is one word (`loader_orders_per_s`).
pub fn figure(name: &str, figure: &str, values: &[f64], decimals: usize) -> Spread {
    assert!(
        !figure.contains(char::is_whitespace) && !name.contains(char::is_whitespace),
        "one word each: {name} {figure}"
    );
    let spread = Spread::of(values);
    println!("bench {name} {figure} {}", spread.show(decimals));
    spread
}

/// Print the ratio `a / b` of two measurements taken in the same repetitions, pair by pair
/// (the repetitions interleave both sides, so each pair shares the machine's state): the
/// median and spread of the per-repetition ratios.
pub fn ratio(name: &str, figure_name: &str, a: &[f64], b: &[f64], decimals: usize) -> Spread {
    assert_eq!(
        a.len(),
        b.len(),
        "{figure_name}: one value of each side per repetition"
    );
    let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    figure(name, figure_name, &ratios, decimals)
}

/// The order in which repetition `rep` runs `sides` sides: rotated by one each repetition, so
/// that no side always runs first (on a colder cache) or right after the same other side.
pub fn rotation(rep: usize, sides: usize) -> Vec<usize> {
    (0..sides).map(|i| (i + rep) % sides).collect()
}

/// A size from the environment (`ROWS=…`), or `default`.
pub fn env_u32(key: &str, default: u32) -> u32 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `BENCH_REPS` (default `default`, and never below 5 unless `BENCH_REPS` says so), at least
/// 1.
pub fn reps(default: usize) -> usize {
    std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default.max(5))
        .max(1)
}

/// The machine's CPU time so far, from `/proc/stat`: (busy, all) in clock ticks summed over
/// every core, and the number of cores.
fn cpu_ticks() -> (u64, u64, usize) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat is readable");
    let cores = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    let total: Vec<u64> = stat
        .lines()
        .next()
        .expect("/proc/stat starts with the `cpu` line")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().expect("a tick count"))
        .collect();
    // user nice system idle iowait irq softirq steal …: idle and iowait are not busy.
    let idle = total[3] + total.get(4).copied().unwrap_or(0);
    let all: u64 = total.iter().take(8).sum();
    (all - idle, all, cores)
}

/// How many cores the whole machine keeps busy from `start` on, on average (every process:
/// a job's own and its servers'). A run that keeps `b` of `c` cores busy by itself can go at
/// most `c / b` times faster with more workers, and a side that keeps them all busy leaves
/// another side nothing to overlap with.
pub struct CpuMeter {
    busy: u64,
    all: u64,
    cores: usize,
}

impl CpuMeter {
    pub fn start() -> CpuMeter {
        let (busy, all, cores) = cpu_ticks();
        CpuMeter { busy, all, cores }
    }

    pub fn busy_cores(&self) -> f64 {
        let (busy, all, _) = cpu_ticks();
        (busy - self.busy) as f64 / (all - self.all).max(1) as f64 * self.cores as f64
    }

    /// The number of cores `/proc/stat` lists.
    pub fn cores(&self) -> usize {
        self.cores
    }
}
