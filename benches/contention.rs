//! Contention: the hot path of each contender at 1, 2, 4 and 8 threads, each
//! thread calling its own clone of one service (so they share one token
//! cache, one header, one lock). Criterion reports the throughput in
//! calls/s (elements/s) over all threads. See BENCHMARKS.md; the machine
//! these numbers come from has 2 cores, so 4 and 8 threads oversubscribe it.
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
}

impl Visit for ThreadsVisit<'_, '_> {
    fn visit<S>(&mut self, name: &str, svc: S)
    where
        S: Service<Request<Body>, Response = Response<()>> + Clone + Send + 'static,
        S::Error: std::fmt::Debug,
    {
        let threads = self.threads;
        self.group
            .throughput(Throughput::Elements(threads as u64))
            .bench_function(BenchmarkId::new(name, threads), |b| {
                // One criterion iteration = one call on every thread.
                b.iter_custom(|iters| contenders::run_threads(&svc, threads, iters))
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
    let mut group = c.benchmark_group("contention");
    for threads in THREADS {
        contenders::contenders(
            &rt,
            common::OPAQUE_TOKEN,
            None,
            contenders::InnerKind::Noop,
            &mut ThreadsVisit {
                group: &mut group,
                threads,
            },
        );
    }
    group.finish();
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
            },
        );
    }
    group.finish();
    c.final_summary();
}
