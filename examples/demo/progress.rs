//! The live progress line on stderr (when stderr is a terminal), and the
//! printing that keeps the demo's other output clear of it: a line printed
//! while it is drawn first erases it, and the next tick draws it again.

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// The rate is measured over this many ticks (one second).
const RATE_TICKS: usize = 4;

/// Whether the progress line is on stderr now, the cursor at its end. Held
/// while anything is written, so a line and the progress line never mix.
static DRAWN: Mutex<bool> = Mutex::new(false);

fn drawn() -> MutexGuard<'static, bool> {
    DRAWN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Erases the progress line if it is drawn.
fn erase(drawn: &mut bool) {
    if std::mem::take(drawn) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

/// `println!`, with the progress line out of the way.
#[allow(
    dead_code,
    reason = "tests/ include this file but not local.rs, its user"
)]
pub fn println(line: fmt::Arguments<'_>) {
    let mut drawn = drawn();
    erase(&mut drawn);
    println!("{line}");
}

/// `eprintln!`, with the progress line out of the way.
pub fn eprintln(line: fmt::Arguments<'_>) {
    let mut drawn = drawn();
    erase(&mut drawn);
    eprintln!("{line}");
}

/// The counts the line shows, as they are at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    pub requests: u64,
    pub ok: u64,
    pub unauthorized: u64,
    pub errors: u64,
    pub token_fetches: u64,
}

/// The text of the line: `elapsed` since the start, `per_second` requests
/// lately.
pub fn text(elapsed: Duration, per_second: f64, s: &Sample) -> String {
    format!(
        "demo: {:.1} s, {per_second:.0} requests/s, ok={} unauthorized={} errors={} token_fetches={}",
        elapsed.as_secs_f64(),
        s.ok,
        s.unauthorized,
        s.errors,
        s.token_fetches
    )
}

/// The line being redrawn; [`Line::stop`] erases it.
pub struct Line {
    task: JoinHandle<()>,
}

impl Line {
    /// Redraws the line every [`TICK`] with what `sample` reports.
    pub fn start(sample: impl Fn() -> Sample + Send + 'static) -> Line {
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at((started + TICK).into(), TICK);
            let mut history = VecDeque::from([(started, 0)]);
            loop {
                ticks.tick().await;
                let (now, s) = (Instant::now(), sample());
                let (then, before) = history[0];
                let seconds = now.duration_since(then).as_secs_f64();
                let rate = (s.requests - before) as f64 / seconds.max(1e-3);
                history.push_back((now, s.requests));
                if history.len() > RATE_TICKS {
                    history.pop_front();
                }
                let line = text(now.duration_since(started), rate, &s);
                let mut drawn = drawn();
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{line}\x1b[K");
                let _ = err.flush();
                *drawn = true;
            }
        });
        Line { task }
    }

    /// Stops redrawing and erases the line.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        erase(&mut drawn());
    }
}
