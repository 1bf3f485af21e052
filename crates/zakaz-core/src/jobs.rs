//! The job table: the single source of truth for every scheduled job and service. Unit
//! generation, `manage-timers`, the healthcheck's expectations and the alerts' "missed run"
//! checks all read it; nothing repeats a schedule by hand.

use std::time::Duration;

/// How a job is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// A oneshot service started by a timer.
    Timer {
        /// `OnCalendar=` expression; MSK schedules carry `Europe/Moscow`.
        on_calendar: &'static str,
        /// `RandomizedDelaySec=`.
        randomized_delay: Duration,
        /// `TimeoutStartSec=`: a run still going after this is killed.
        timeout: Duration,
        /// The nominal interval between runs, for "missed run" checks.
        interval: Duration,
    },
    /// Workers of the campaign queue: per shard one instance of a template service per lane,
    /// each started by its own timer (a timer firing while its worker runs does nothing).
    Workers {
        lanes: &'static [WorkerLane],
        /// `RuntimeMaxSec=`: a safety net above the workers' own lifetime.
        runtime_max: Duration,
    },
    /// A long-running service (`Type=notify`).
    Service {
        /// The port it listens on by default (loopback).
        port: u16,
        /// `WatchdogSec=`: systemd restarts it when it stops answering for this long.
        watchdog: Duration,
    },
}

/// One worker of every shard and the calendar of its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLane {
    /// `copy:1`, `copy:2`, …, `rest`.
    pub par_id: &'static str,
    pub on_calendar: &'static str,
}

impl WorkerLane {
    /// The lane in unit names: `copy1`, `rest` (`:` breaks `systemd-analyze verify`).
    pub fn unit_token(&self) -> String {
        self.par_id.replace(':', "")
    }
}

/// How fresh a job's data must be, read from `v_data_freshness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// `source` in `v_data_freshness`.
    pub source: &'static str,
    /// Alert when `days_behind` exceeds this.
    pub max_days_behind: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// The unit name and the `job` in `meta_job_runs`.
    pub name: &'static str,
    /// Other names operators may type (`gmail` for `gmail_ingest`).
    pub aliases: &'static [&'static str],
    /// The binary the unit runs.
    pub binary: &'static str,
    pub description: &'static str,
    pub schedule: Schedule,
    pub enabled_by_default: bool,
    /// `EnvironmentFile=`, relative to the install prefix.
    pub env_file: &'static str,
    pub freshness: Option<Freshness>,
    /// `MemoryMax=` in MiB: a run gone wrong is killed before it starves the host.
    pub memory_max_mib: u32,
    /// `TasksMax=`: threads and processes.
    pub tasks_max: u32,
}

const MIN: u64 = 60;
const HOUR: u64 = 60 * MIN;

pub const JOBS: &[Job] = &[
    Job {
        name: "qtickets",
        aliases: &[],
        binary: "ingest-qtickets",
        description: "Load ticket sales, events and inventory from QTickets",
        schedule: Schedule::Timer {
            on_calendar: "*:0/15",
            randomized_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(300),
            interval: Duration::from_secs(15 * MIN),
        },
        enabled_by_default: true,
        env_file: "secrets/qtickets.env",
        freshness: Some(Freshness {
            source: "qtickets",
            max_days_behind: 1,
        }),
        memory_max_mib: 512,
        tasks_max: 64,
    },
    Job {
        name: "vk_ads",
        aliases: &["vk"],
        binary: "ingest-vk",
        description: "Load yesterday's VK Ads statistics",
        schedule: Schedule::Timer {
            on_calendar: "*-*-* 00:00:00 Europe/Moscow",
            randomized_delay: Duration::from_secs(5 * MIN),
            timeout: Duration::from_secs(600),
            interval: Duration::from_secs(24 * HOUR),
        },
        enabled_by_default: true,
        env_file: "secrets/vk_ads.env",
        freshness: Some(Freshness {
            source: "vk_ads",
            max_days_behind: 2,
        }),
        memory_max_mib: 512,
        tasks_max: 64,
    },
    Job {
        name: "direct",
        aliases: &["yandex_direct"],
        binary: "ingest-direct",
        description: "Load yesterday's Yandex Direct statistics",
        schedule: Schedule::Timer {
            on_calendar: "*-*-* 00:10:00 Europe/Moscow",
            randomized_delay: Duration::from_secs(5 * MIN),
            timeout: Duration::from_secs(600),
            interval: Duration::from_secs(24 * HOUR),
        },
        enabled_by_default: true,
        env_file: "secrets/direct.env",
        freshness: Some(Freshness {
            source: "direct",
            max_days_behind: 2,
        }),
        memory_max_mib: 512,
        tasks_max: 64,
    },
    Job {
        name: "gmail_ingest",
        aliases: &["gmail"],
        binary: "ingest-gmail",
        description: "Backup channel: load sales reports sent by e-mail (Gmail)",
        schedule: Schedule::Timer {
            on_calendar: "*-*-* 00,04,08,12,16,20:00:00 Europe/Moscow",
            randomized_delay: Duration::from_secs(5 * MIN),
            timeout: Duration::from_secs(300),
            interval: Duration::from_secs(4 * HOUR),
        },
        enabled_by_default: false,
        env_file: "secrets/gmail.env",
        freshness: Some(Freshness {
            source: "gmail_ingest",
            max_days_behind: 2,
        }),
        memory_max_mib: 512,
        tasks_max: 64,
    },
    Job {
        name: "alerts",
        aliases: &[],
        binary: "alerts",
        description: "Check runs and data freshness, notify the people on duty",
        schedule: Schedule::Timer {
            on_calendar: "*-*-* 00/2:00:00 Europe/Moscow",
            randomized_delay: Duration::from_secs(5 * MIN),
            timeout: Duration::from_secs(120),
            interval: Duration::from_secs(2 * HOUR),
        },
        enabled_by_default: true,
        env_file: "secrets/alerts.env",
        freshness: None,
        memory_max_mib: 256,
        tasks_max: 32,
    },
    Job {
        name: "camp_queue",
        aliases: &["camp-queue", "queue"],
        binary: "camp-queue",
        description: "Campaign copy/archive/delete queue workers, per shard",
        schedule: Schedule::Workers {
            lanes: &[
                WorkerLane {
                    par_id: "copy:1",
                    on_calendar: "*:0/3",
                },
                WorkerLane {
                    par_id: "copy:2",
                    on_calendar: "*:0/15",
                },
                WorkerLane {
                    par_id: "copy:3",
                    on_calendar: "*:0/15",
                },
                WorkerLane {
                    par_id: "rest",
                    on_calendar: "*:0/3",
                },
            ],
            runtime_max: Duration::from_secs(30 * MIN),
        },
        // It needs the shards' DSNs first (secrets/camp_queue.env).
        enabled_by_default: false,
        env_file: "secrets/camp_queue.env",
        freshness: None,
        memory_max_mib: 256,
        tasks_max: 64,
    },
    Job {
        name: "healthcheck",
        aliases: &[],
        binary: "healthcheck",
        description: "HTTP health and freshness endpoints",
        schedule: Schedule::Service {
            port: 8080,
            watchdog: Duration::from_secs(30),
        },
        enabled_by_default: true,
        env_file: "secrets/healthcheck.env",
        freshness: None,
        // Its own HTTP front: one thread for every connection, a few workers, two runtimes.
        memory_max_mib: 256,
        tasks_max: 64,
    },
];

/// Find a job by name, alias or unit name (`qtickets`, `gmail`, `qtickets.timer`).
pub fn find(name: &str) -> Option<&'static Job> {
    let bare = name
        .strip_suffix(".service")
        .or_else(|| name.strip_suffix(".timer"))
        .unwrap_or(name);
    JOBS.iter()
        .find(|j| j.name == bare || j.aliases.contains(&bare))
        .or_else(|| {
            // A worker's timer or service: `camp_queue-2-copy:1`, `camp_queue@2-copy:1`.
            JOBS.iter().filter(|j| j.is_workers()).find(|j| {
                bare.strip_prefix(j.name)
                    .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('@'))
            })
        })
}

/// The job table entry for a name every caller knows to exist (binaries name themselves).
pub fn get(name: &str) -> &'static Job {
    find(name).unwrap_or_else(|| panic!("job `{name}` is not in the job table"))
}

/// The worker job and instance of a worker timer's name (`camp_queue-2-copy1.timer` →
/// `camp_queue`, `2-copy1`).
pub fn worker_timer_instance(name: &str) -> Option<(&'static Job, &str)> {
    let bare = name.strip_suffix(".timer")?;
    JOBS.iter().filter(|j| j.is_workers()).find_map(|j| {
        let instance = bare.strip_prefix(j.name)?.strip_prefix('-')?;
        Some((j, instance))
    })
}

/// `qtickets, vk_ads, …`: for error messages that list the valid names.
pub fn names() -> String {
    JOBS.iter().map(|j| j.name).collect::<Vec<_>>().join(", ")
}

impl Job {
    pub fn timeout(&self) -> Option<Duration> {
        match self.schedule {
            Schedule::Timer { timeout, .. } => Some(timeout),
            Schedule::Service { .. } | Schedule::Workers { .. } => None,
        }
    }

    /// The instance of one worker: `2-copy1` (shard 2, lane `copy:1`).
    pub fn worker_instance(shard: u32, lane: &WorkerLane) -> String {
        format!("{shard}-{}", lane.unit_token())
    }

    /// The timer of one worker: `camp_queue-2-copy1.timer`. A plain timer, not an instance
    /// of a template: each lane has its own calendar.
    pub fn worker_timer(&self, shard: u32, lane: &WorkerLane) -> String {
        format!("{}-{}.timer", self.name, Job::worker_instance(shard, lane))
    }

    /// The service an instance runs: `camp_queue@2-copy1.service`.
    pub fn worker_service(&self, instance: &str) -> String {
        format!("{}@{instance}.service", self.name)
    }

    pub fn is_workers(&self) -> bool {
        matches!(self.schedule, Schedule::Workers { .. })
    }

    /// The unit whose presence says the job is installed, and the `.wants` directory whose
    /// link says it is enabled (a worker job: the timer of shard 1's primary).
    pub fn enablement_unit(&self) -> (String, &'static str) {
        match self.schedule {
            Schedule::Timer { .. } => (format!("{}.timer", self.name), "timers.target.wants"),
            Schedule::Workers { lanes, .. } => {
                (self.worker_timer(1, &lanes[0]), "timers.target.wants")
            }
            Schedule::Service { .. } => {
                (format!("{}.service", self.name), "multi-user.target.wants")
            }
        }
    }

    pub fn is_timer(&self) -> bool {
        matches!(self.schedule, Schedule::Timer { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_are_unique() {
        let mut all: Vec<&str> = JOBS
            .iter()
            .flat_map(|j| std::iter::once(j.name).chain(j.aliases.iter().copied()))
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn find_accepts_aliases_and_unit_names() {
        assert_eq!(find("gmail").unwrap().name, "gmail_ingest");
        assert_eq!(find("qtickets.timer").unwrap().name, "qtickets");
        assert_eq!(find("vk_ads.service").unwrap().binary, "ingest-vk");
        assert!(find("nope").is_none());
        assert_eq!(
            find("camp_queue-2-copy1.timer").unwrap().binary,
            "camp-queue"
        );
        assert_eq!(
            find("camp_queue@2-rest.service").unwrap().binary,
            "camp-queue"
        );
    }

    #[test]
    fn seed_schedules() {
        let t = |n: &str| match get(n).schedule {
            Schedule::Timer {
                on_calendar,
                randomized_delay,
                timeout,
                ..
            } => (on_calendar, randomized_delay.as_secs(), timeout.as_secs()),
            _ => unreachable!(),
        };
        assert_eq!(t("qtickets"), ("*:0/15", 60, 300));
        assert_eq!(t("vk_ads"), ("*-*-* 00:00:00 Europe/Moscow", 300, 600));
        assert_eq!(t("direct"), ("*-*-* 00:10:00 Europe/Moscow", 300, 600));
        assert_eq!(t("gmail_ingest").2, 300);
        assert!(!get("gmail_ingest").enabled_by_default);
        assert!(get("vk_ads").enabled_by_default && get("direct").enabled_by_default);
        assert!(matches!(
            get("healthcheck").schedule,
            Schedule::Service { port: 8080, .. }
        ));
        assert!(get("healthcheck").enabled_by_default, "the seed enables it");
    }
}
