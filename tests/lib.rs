//! Cross-binary test support: every binary's command definition, and paths of the built
//! binaries (tests here run the real executables as an operator or systemd would).

use std::path::PathBuf;

use clap::CommandFactory;

/// The clap definition of every binary in the workspace.
pub fn all_commands() -> Vec<clap::Command> {
    vec![
        ingest_qtickets::Cli::command(),
        ingest_vk::Cli::command(),
        ingest_direct::Cli::command(),
        ingest_gmail::Cli::command(),
        alerts::Cli::command(),
        healthcheck::Cli::command(),
        camp_queue::Cli::command(),
        manage_timers::Cli::command(),
        api_sandbox::Cli::command(),
    ]
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_owned()
}

/// A built binary of the workspace (`scripts/test.sh` builds them all first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-HASH → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "binary `{}` is not built; run `cargo build --workspace` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A command's stdout and stderr, for assertion messages and greps.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Poll `probe` until it returns Some, at most `limit` (a state another process reaches,
/// never time passing).
pub fn wait_for<T>(
    what: &str,
    limit: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Write `content` to `inside` (a path as the machine sees it), creating its directories.
pub fn write_inside(machine: &Machine, inside: &str, content: &str) {
    let path = machine.path(inside);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
}

/// A loopback port that was free a moment ago (for a service the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// A real systemd booted as PID 1 of a private PID + mount + network namespace, for
/// end-to-end tests.
///
/// The machine has a loopback of its own, so its services never compete with the host's for
/// ports (a quickstart's healthcheck on the host's 8080 is no obstacle). What it needs of the
/// host (ClickHouse, the MariaDB servers, a test's sandbox) is relayed: [`Machine::forward`]
/// makes a host loopback port answer on the same port inside; [`Machine::connect`] reaches a
/// port inside from the host.
///
/// The host is never changed: `/etc` is an overlay whose writes land in a tmpfs (units,
/// `useradd`, completions), `/run`, `/tmp`, `/var/tmp`, `/opt`, `/var/log`, `/var/lib/systemd`, `/root`, `/usr/local`
/// are fresh tmpfs (otherwise systemd-tmpfiles would wipe the host's `/tmp`), and `/dev` is a
/// private tmpfs with the few device nodes bound in. The host's unit enablement links are
/// dropped inside, so only our units run. Mounts use `mount -n` (no utab on the host).
pub struct Machine {
    unshare: std::process::Child,
    /// The host PID of the namespace's systemd.
    pub pid: u32,
    /// Tells the relays to stop accepting (set when the machine goes down).
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

const BOOT: &str = r#"
set -e
ip link set lo up
M="mount -n"
$M -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/etc-upper /run/etc-work /run/dev
$M -t overlay overlay -o lowerdir=/etc,upperdir=/run/etc-upper,workdir=/run/etc-work /etc
# A host name of its own (its own UTS namespace): two machines are two hosts.
if [ -n "${ZAKAZ_MACHINE_HOSTNAME:-}" ]; then
    echo "$ZAKAZ_MACHINE_HOSTNAME" >/etc/hostname
    hostname "$ZAKAZ_MACHINE_HOSTNAME"
fi
$M -t tmpfs -o mode=1777 tmpfs /tmp
$M -t tmpfs -o mode=1777 tmpfs /var/tmp
for d in /opt /home /var/log /var/lib/systemd; do mkdir -p "$d" 2>/dev/null || true; $M -t tmpfs -o mode=755 tmpfs "$d"; done
$M -t tmpfs -o mode=700 tmpfs /root
# Man pages go to /usr/local/share/man: a tmpfs here, so the host's is never written.
$M -t tmpfs -o mode=755 tmpfs /usr/local
$M -t tmpfs -o mode=755 tmpfs /run/dev
for n in null zero full random urandom tty; do touch /run/dev/$n; $M --bind /dev/$n /run/dev/$n; done
mkdir /run/dev/pts /run/dev/shm
$M --bind /dev/pts /run/dev/pts
$M -t tmpfs -o mode=1777 tmpfs /run/dev/shm
ln -s /proc/self/fd /run/dev/fd
ln -s /proc/self/fd/0 /run/dev/stdin
ln -s /proc/self/fd/1 /run/dev/stdout
ln -s /proc/self/fd/2 /run/dev/stderr
ln -s pts/ptmx /run/dev/ptmx
$M --move /run/dev /dev
# Nothing of the host's units, links or drop-ins: only what the tests install runs here.
find /etc/systemd/system -mindepth 1 -maxdepth 1 -exec rm -rf {} +
export container=zakaz-e2e
exec /lib/systemd/systemd --system --show-status=no --log-target=journal
"#;

impl Machine {
    /// Boot and wait (bounded) until `systemctl is-system-running` says running.
    pub fn boot(log: &std::path::Path) -> anyhow::Result<Machine> {
        Machine::boot_with(log, None)
    }

    /// [`Machine::boot`] with a host name of its own (`hostname`, `/etc/hostname`): another
    /// host for the jobs (their journal's `host`, the leases' holders).
    pub fn boot_as(log: &std::path::Path, hostname: &str) -> anyhow::Result<Machine> {
        Machine::boot_with(log, Some(hostname))
    }

    fn boot_with(log: &std::path::Path, hostname: Option<&str>) -> anyhow::Result<Machine> {
        let log_file = std::fs::File::create(log)?;
        let unshare = std::process::Command::new("unshare")
            .env("ZAKAZ_MACHINE_HOSTNAME", hostname.unwrap_or_default())
            .args([
                "--pid",
                "--fork",
                "--mount",
                "--mount-proc",
                "--uts",
                "--net",
                "--propagation",
                "private",
                "bash",
                "-c",
                BOOT,
            ])
            // The machine keeps the real clock: systemd's timers wait on timerfds, which the
            // shifted pass's libfaketime cannot move (scripts/test.sh).
            .env_remove("LD_PRELOAD")
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot run `unshare`: {e}"))?;
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let mut machine = Machine {
            unshare,
            pid: 0,
            stop: Default::default(),
        };
        for _ in 0..200 {
            if let Some(pid) = std::fs::read_to_string(&children)
                .ok()
                .and_then(|c| c.split_whitespace().next()?.parse().ok())
            {
                machine.pid = pid;
                break;
            }
            if let Some(status) = machine.unshare.try_wait()? {
                anyhow::bail!(
                    "the namespace exited at once ({status}): see {}",
                    log.display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        anyhow::ensure!(machine.pid != 0, "no systemd appeared in the namespace");
        let mut state = String::new();
        for _ in 0..240 {
            let out = machine.exec(&["systemctl", "is-system-running"]);
            state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if state == "running" || state == "degraded" {
                for port in host_services() {
                    machine.forward(port)?;
                }
                return Ok(machine);
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        anyhow::bail!(
            "systemd did not reach `running` (last state `{state}`): see {}",
            log.display()
        )
    }

    /// Run a command inside, with a clean environment.
    pub fn exec(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("nsenter")
            .args([
                "-t",
                &self.pid.to_string(),
                "-p",
                "-m",
                // Its network too: a command inside reaches the host only through
                // `Machine::forward`, as the machine's services do.
                "-n",
                // And its host name (`Machine::boot_as`).
                "-u",
                "--",
                "env",
                "-i",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("nsenter runs")
    }

    /// Copy the deployment's binaries to `/run/zakaz-binaries` inside: the checkout may live
    /// under a path (such as /tmp) that is private inside. Returns that directory.
    pub fn stage_binaries(&self) -> &'static str {
        const DIR: &str = "/run/zakaz-binaries";
        let stage = self.path(DIR);
        std::fs::create_dir_all(&stage).expect("stage directory");
        for name in manage_timers::install::BINARIES {
            std::fs::copy(binary(name), stage.join(name)).expect("copy a binary into the machine");
        }
        DIR
    }

    /// A path inside the machine, as seen from the host (through /proc).
    pub fn path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{inside}", self.pid))
    }
}

/// The host's services every machine reaches on its own loopback: ClickHouse and the MariaDB
/// servers of the queue's shards.
fn host_services() -> Vec<u16> {
    let clickhouse = url::Url::parse(&zakaz_core::testing::clickhouse_url())
        .ok()
        .and_then(|u| u.port_or_known_default())
        .unwrap_or(8123);
    let mut ports = vec![clickhouse];
    ports.extend(camp_queue::testing::servers());
    ports
}

impl Machine {
    /// Run `f` on a thread inside the machine's network namespace (sockets it makes stay
    /// there).
    fn in_network<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", self.pid))?;
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| anyhow::anyhow!("cannot enter the machine's network: {e}"))?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the network thread panicked"))?
        })
    }

    /// Make the host's `127.0.0.1:port` answer at `127.0.0.1:port` inside the machine.
    pub fn forward(&self, port: u16) -> anyhow::Result<()> {
        let listener = self.in_network(|| std::net::TcpListener::bind(("127.0.0.1", port)))??;
        listener.set_nonblocking(true)?;
        let stop = self.stop.clone();
        std::thread::spawn(move || relay(listener, port, &stop));
        Ok(())
    }

    /// [`Machine::forward`] the port of an `http://127.0.0.1:PORT…` URL (a test's sandbox).
    pub fn forward_url(&self, url: &str) -> anyhow::Result<()> {
        let port = url::Url::parse(url)?
            .port()
            .ok_or_else(|| anyhow::anyhow!("`{url}` names no port"))?;
        self.forward(port)
    }

    /// A connection to `127.0.0.1:port` inside the machine.
    pub fn connect(&self, port: u16) -> std::io::Result<std::net::TcpStream> {
        self.in_network(|| std::net::TcpStream::connect(("127.0.0.1", port)))
            .map_err(std::io::Error::other)?
    }
}

/// Accept inside, connect on the host, copy both ways; until the machine goes down.
fn relay(listener: std::net::TcpListener, port: u16, stop: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((inside, _)) => {
                let Ok(host) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                    continue; // the host's service is down: the client sees a reset
                };
                let _ = inside.set_nonblocking(false);
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                if let (Ok(inside2), Ok(host2)) = (inside.try_clone(), host.try_clone()) {
                    pipe(inside, host);
                    pipe(host2, inside2);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

impl Machine {
    /// Kill the whole machine at once (SIGKILL to its systemd ends every process of its PID
    /// namespace): a host that dies mid-run, no goodbye to anyone.
    pub fn kill(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if self.pid != 0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
        let _ = self.unshare.wait();
        self.pid = 0;
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if self.pid != 0 {
            let _ = self.exec(&["systemctl", "poweroff"]);
        }
        for _ in 0..120 {
            if matches!(self.unshare.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// A campaign-queue deployment of the test's own: ppcdict and shard 1 on the system MariaDB,
/// shard 2 on the first extra server (`scripts/mariadb-shards.sh`), dropped at the end.
pub fn queue_stand() -> camp_queue::testing::TestStand {
    camp_queue::testing::TestStand::new(binary("camp-queue"), 2)
}
