//! The database settings: DSN parameters are honoured or refused (exit 78, naming the
//! setting), never dropped; a refused login exits 78 and an unreachable server 69, naming the
//! shard and its DSN (password hidden), quickly.

use std::time::{Duration, Instant};

use crate::{Stand, stand};

struct Run {
    code: i32,
    err: String,
    took: Duration,
}

fn run_with(stand: &Stand, env: &str, value: &str, args: &[&str]) -> Run {
    let started = Instant::now();
    let out = stand.command().env(env, value).args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

fn shard_dsns(stand: &Stand) -> (String, String) {
    let dsns = stand.shard_dsns();
    let (a, b) = dsns.split_once(',').unwrap();
    (a.to_owned(), b.to_owned())
}

#[test]
fn dsn_parameters_are_honoured_or_refused_naming_the_setting_never_dropped() {
    let stand = stand(2);
    let (first, second) = shard_dsns(&stand);
    let dict = stand.dsn_env()[0].1.clone();
    for (env, value, args, needles) in [
        // The servers here have no TLS: a DSN that requires it must not connect in plain text.
        (
            "PPC_SHARD_DSNS",
            format!("{first},{second}?ssl-mode=REQUIRED"),
            vec!["status"],
            vec!["shard 2", "`PPC_SHARD_DSNS`", "ssl-mode=REQUIRED", "TLS"],
        ),
        (
            "PPC_SHARD_DSNS",
            format!("{first}?sslmode=verify_ca&ssl-ca=/nonexistent/ca.pem,{second}"),
            vec!["status"],
            vec!["shard 1", "`PPC_SHARD_DSNS`", "TLS"],
        ),
        (
            "PPCDICT_DSN",
            format!("{dict}?ssl-mode=REQUIRED"),
            vec!["props", "get"],
            vec!["`PPCDICT_DSN`", "TLS"],
        ),
        // Unknown or malformed parameters are refused before anything connects.
        (
            "PPC_SHARD_DSNS",
            format!("{first},{second}?connect_timeout=5"),
            vec!["status"],
            vec![
                "`PPC_SHARD_DSNS`",
                "shard 2",
                "unknown DSN parameter `connect_timeout`",
                "ssl-mode",
            ],
        ),
        (
            "PPC_SHARD_DSNS",
            format!("{first}?ssl-mode=sometimes,{second}"),
            vec!["status"],
            vec!["`PPC_SHARD_DSNS`", "shard 1", "`ssl-mode=sometimes`"],
        ),
        (
            "PPCDICT_DSN",
            format!("{dict}?charset=latin1"),
            vec!["props", "get"],
            vec!["`PPCDICT_DSN`", "charset"],
        ),
    ] {
        let r = run_with(&stand, env, &value, &args);
        assert_eq!(r.code, 78, "{env}={value}: {}", r.err);
        assert_eq!(r.err.trim().lines().count(), 1, "one line: {}", r.err);
        for needle in needles {
            assert!(
                r.err.contains(needle),
                "{env}={value}: `{needle}` in {}",
                r.err
            );
        }
    }
    // Parameters that apply are used: plain text asked for explicitly, a statement cache.
    let value = format!(
        "{first}?ssl-mode=DISABLED&statement-cache-capacity=10,{second}?ssl-mode=PREFERRED"
    );
    let r = run_with(&stand, "PPC_SHARD_DSNS", &value, &["status"]);
    assert_eq!(r.code, 0, "{}", r.err);
}

#[test]
fn a_refused_login_exits_78_and_an_unreachable_server_69_naming_the_shard_quickly() {
    let stand = stand(2);
    let (first, second) = shard_dsns(&stand);
    let port2 = stand.port_of(2);
    // A user the server does not know, with a password that must never be printed.
    let refused = second.replace("mysql://root@", "mysql://nobody_cq:Pw-9-secret@");
    for args in [
        vec!["status"],
        vec!["run", "--shard", "2", "--par-id", "copy:1", "--once"],
    ] {
        let r = run_with(
            &stand,
            "PPC_SHARD_DSNS",
            &format!("{first},{refused}"),
            &args,
        );
        assert_eq!(r.code, 78, "{args:?}: {}", r.err);
        for needle in [
            "shard 2",
            "`PPC_SHARD_DSNS`",
            &format!("nobody_cq:***@127.0.0.1:{port2}"),
            "login refused",
        ] {
            assert!(r.err.contains(needle), "{args:?}: `{needle}` in {}", r.err);
        }
        assert!(!r.err.contains("Pw-9-secret"), "{}", r.err);
    }

    // Nothing listens there: refused at once.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let down = format!("{first},mysql://root@127.0.0.1:{port}/x");
    let r = run_with(&stand, "PPC_SHARD_DSNS", &down, &["status"]);
    assert_eq!(r.code, 69, "{}", r.err);
    for needle in [
        "shard 2",
        "`PPC_SHARD_DSNS`",
        &format!("127.0.0.1:{port}"),
        "cannot be reached",
    ] {
        assert!(r.err.contains(needle), "`{needle}` in {}", r.err);
    }
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);

    // A server that takes the connection and never answers: the short connect timeout of
    // `status` (not the workers' 10 s).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let hung = format!("{first},mysql://root@127.0.0.1:{port}/x");
    let r = run_with(&stand, "PPC_SHARD_DSNS", &hung, &["status"]);
    assert_eq!(r.code, 69, "{}", r.err);
    for needle in ["shard 2", &format!("127.0.0.1:{port}"), "no answer within"] {
        assert!(r.err.contains(needle), "`{needle}` in {}", r.err);
    }
    assert!(r.took < Duration::from_secs(8), "took {:?}", r.took);
    drop(silent);
}

#[test]
fn a_dsn_password_shorter_than_eight_characters_is_refused() {
    let stand = stand(1);
    let dsn = stand
        .shard_dsns()
        .replacen("mysql://root@", "mysql://root:2026@", 1);
    let run = run_with(&stand, "PPC_SHARD_DSNS", &dsn, &["status"]);
    assert_eq!(run.code, 78, "{}", run.err);
    assert!(
        run.err.contains("PPC_SHARD_DSNS") && run.err.contains("at least 8 characters"),
        "{}",
        run.err
    );
    assert!(
        !run.err.contains("2026"),
        "the password is never shown: {}",
        run.err
    );
}
