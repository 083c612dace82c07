//! `examples/demo` as a real OS process: the fleet's processes (each with
//! `--redis`: its own runtime, HTTP client, token cache and Redis
//! connection), and the demo configured by environment variables alone
//! (a child's environment, never this process's, which the other tests
//! share).
//!
//! The demo binary is built once per test run with `cargo build --example
//! demo` and the features this test binary was built with: when `cargo test`
//! built the examples already (it does, with the same features), that build
//! is a no-op.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};

pub use crate::support::demo_binary::demo_binary;

/// One process test at a time: each runs up to 8 processes, on a machine
/// that may have 2 cores.
pub async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// The `summary:` line of one demo process, and its `demo: fleet:` line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The `summary:` line: the demo's own summary.
    pub counts: crate::run::Summary,
    /// `name=value` pairs of the fleet line (tier counters).
    pub fleet: Vec<(String, u64)>,
}

impl Summary {
    fn parse(stdout: &str) -> Option<Summary> {
        let pairs = |line: &str| -> Vec<(String, u64)> {
            line.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
                .collect()
        };
        let summary = pairs(stdout.lines().find(|l| l.starts_with("summary: "))?);
        let get = |k: &str| summary.iter().find(|p| p.0 == k).map(|p| p.1);
        let counts = crate::run::Summary {
            requests: get("requests")?,
            ok: get("ok")?,
            unauthorized: get("unauthorized")?,
            errors: get("errors")?,
            token_fetches: get("token_fetches")?,
            retries: get("retries")?,
        };
        Some(Summary {
            counts,
            fleet: stdout
                .lines()
                .find_map(|l| l.strip_prefix("demo: fleet: "))
                .map(pairs)
                .unwrap_or_default(),
        })
    }

    /// `n` requests, all answered 200, with one token, and no fleet line.
    pub fn all_ok_with_one_token(n: u64) -> Summary {
        Summary {
            counts: all_ok_with_one_token(n),
            fleet: Vec::new(),
        }
    }

    /// A counter of the fleet line (0 when absent).
    pub fn fleet(&self, name: &str) -> u64 {
        self.fleet.iter().find(|p| p.0 == name).map_or(0, |p| p.1)
    }
}

/// `n` requests, all answered 200, with one token: the demo's summary.
pub fn all_ok_with_one_token(n: u64) -> crate::run::Summary {
    crate::run::Summary {
        requests: n,
        ok: n,
        token_fetches: 1,
        ..crate::run::Summary::default()
    }
}

/// A running demo process; its stdout is read as it comes.
pub struct Member {
    child: Child,
    stdout: Option<JoinHandle<String>>,
}

impl Member {
    /// Starts the demo with `flags` (after the program name).
    pub fn start(flags: &[String]) -> Member {
        Member::start_with_env(flags, &[])
    }

    /// Starts the demo with `flags` and the variables `env` (none of the
    /// demo's variables is inherited from this process).
    pub fn start_with_env(flags: &[String], env: &[(&str, String)]) -> Member {
        let mut command = Command::new(demo_binary());
        for (name, _) in std::env::vars_os() {
            let n = name.to_string_lossy();
            if n.starts_with("OAUTH2_") || n.starts_with("DEMO_") || n == "RUST_LOG" {
                command.env_remove(&name);
            }
        }
        let mut child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the demo");
        let out = child.stdout.take().expect("piped stdout");
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        Member {
            child,
            stdout: Some(stdout),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no summary, no cleanup, the lease it holds stays in Redis.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the demo");
        let _ = self.child.wait();
    }

    /// Waits for it to exit (killing it past `deadline`); its summary, and
    /// its whole stdout when there is none.
    pub fn finish(mut self, deadline: Instant) -> Result<Summary, String> {
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the demo") {
                let stdout = self.stdout.take().expect("stdout").join().expect("reader");
                return match Summary::parse(&stdout) {
                    Some(s) => Ok(s),
                    None => Err(format!("exit {status}, no summary:\n{stdout}")),
                };
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err("still running at the deadline: killed".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // A test that fails leaves no process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_summary_line_and_a_fleet_line_parse() {
    let out = "demo: 1.0 s\ndemo: fleet: shared_hits=3 leases=1 fallbacks=0\n\
               summary: requests=9 ok=8 unauthorized=1 errors=0 token_fetches=1 retries=2\n";
    let s = Summary::parse(out).expect("a summary");
    let c = &s.counts;
    let counts = (
        c.requests,
        c.ok,
        c.unauthorized,
        c.errors,
        c.token_fetches,
        c.retries,
    );
    assert_eq!(counts, (9, 8, 1, 0, 1, 2));
    assert_eq!(
        (s.fleet("shared_hits"), s.fleet("leases"), s.fleet("x")),
        (3, 1, 0)
    );
    assert_eq!(Summary::parse("demo: no summary\n"), None);
}
