//! Contention: the hot path of each contender at 1, 2, 4 and 8 threads, each
//! thread calling its own clone of one service (so they share one token
//! cache, one header, one lock). Criterion reports the throughput in
//! calls/s (elements/s) over all threads. See BENCHMARKS.md; the machine
//! these numbers come from has 2 cores, so 4 and 8 threads oversubscribe it.
//!
//! Groups: `contention` (each thread calls its own clone, reused),
//! `contention/clone_per_request` (each call on a fresh clone of the
//! thread's service, as `svc.clone().oneshot(req)` does: an axum handler's
//! state, a client's per-request clone), `contention/inner_6_arcs` (reused,
//! over an inner service as costly to clone as a hyper-util client).
//!
//! `cargo bench -p tower-oauth2-benches --bench contention [-- FILTER]`.

mod common;
mod contenders;

use std::time::Duration;

use common::Body;
use contenders::Visit;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use http::{Request, Response};
use tower::Service;

const THREADS: [usize; 4] = [1, 2, 4, 8];

struct ThreadsVisit<'a, 'b> {
    group: &'a mut BenchmarkGroup<'b, criterion::measurement::WallTime>,
    threads: usize,
    /// A fresh clone of the thread's service for every call.
    clone_per_call: bool,
}

impl Visit for ThreadsVisit<'_, '_> {
    fn visit<S>(&mut self, name: &str, svc: S)
    where
        S: Service<Request<Body>, Response = Response<()>> + Clone + Send + 'static,
        S::Error: std::fmt::Debug,
    {
        let threads = self.threads;
        let load = contenders::Load {
            make: std::sync::Arc::new(|| Request::new(Body::default())),
            clone_per_call: self.clone_per_call,
        };
        self.group
            .throughput(Throughput::Elements(threads as u64))
            .bench_function(BenchmarkId::new(name, threads), |b| {
                // One criterion iteration = one call on every thread.
                b.iter_custom(|iters| contenders::run_load(&svc, threads, iters, &load))
            });
    }
}

fn main() {
    let rt = common::runtime(1);
    let _guard = rt.enter();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();
    for (name, clone_per_call) in [
        ("contention", false),
        ("contention/clone_per_request", true),
    ] {
        let mut group = c.benchmark_group(name);
        for threads in THREADS {
            contenders::contenders(
                &rt,
                common::OPAQUE_TOKEN,
                None,
                contenders::InnerKind::Noop,
                &mut ThreadsVisit {
                    group: &mut group,
                    threads,
                    clone_per_call,
                },
            );
        }
        group.finish();
    }
    // Again over an inner service that is as costly to clone as a
    // hyper-util client: a layer that clones it per request makes the
    // threads share its `Arc` counters.
    let mut group = c.benchmark_group("contention/inner_6_arcs");
    for threads in THREADS {
        contenders::contenders(
            &rt,
            common::OPAQUE_TOKEN,
            None,
            contenders::InnerKind::Arcs,
            &mut ThreadsVisit {
                group: &mut group,
                threads,
                clone_per_call: false,
            },
        );
    }
    group.finish();
    c.final_summary();
}
