//! Benchmark: allocations per second through the real `MessageBus` on an `EmbeddedStore` in a temporary
//! directory (every commit fsynced before it is answered), with 1, 4, 16 and 64 concurrent tasks,
//! across 1,000 SKUs and on one hot SKU. After each case it prints the fsyncs (group commits) per
//! second and the commits per fsync, from the store's counters.
//!
//! `cargo bench --no-default-features --features local --bench embedded_commit`
//! (`EMBEDDED_READ_MODE=blocking` runs the reads on tokio's blocking pool instead of inline;
//! `EMBEDDED_BENCH_DIR=/dev/shm` puts the store on tmpfs, where fsync costs nothing; `-- many_skus`
//! runs only the cases whose name has that filter; `EMBEDDED_CACHE_MB` and
//! `EMBEDDED_PRODUCT_CACHE_LINES` override the store's cache sizes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allocation::adapters::embedded::{EmbeddedOptions, EmbeddedStore, ReadMode};
use allocation::domain::{Allocate, CreateBatch, OrderLine};
use allocation::service::{Bootstrap, ProductRepository, RetryPolicy, ServiceError};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};

type Bus = allocation::service::MessageBus<EmbeddedStore>;

const SKUS: usize = 1_000;
const MANY_PER_ITER: u64 = 1_000;
const HOT_PER_ITER: u64 = 300;
const CONCURRENCY: [usize; 4] = [1, 4, 16, 64];
/// Enough stock that no allocation ever runs out.
const STOCK: u32 = 1_000_000_000;

static ORDERS: AtomicU64 = AtomicU64::new(0);

/// What the store's counters and the bus saw during the timed parts of one case.
#[derive(Default)]
struct Observed {
    elapsed: Duration,
    allocations: u64,
    fsyncs: u64,
    commits: u64,
    rejected: u64,
    errors: u64,
    /// CPU time of the whole process, and of the store's writer thread.
    cpu: Duration,
    writer_cpu: Duration,
    written: u64,
}

/// User + system CPU time from a `/proc/.../stat` file (Linux; zero elsewhere).
fn cpu_time(stat: &std::path::Path) -> Duration {
    let Ok(text) = std::fs::read_to_string(stat) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 (11 and 12 after the name), in clock ticks of 10 ms.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// CPU time of the process and of the thread named `embedded-store-writer`, and the bytes that thread
/// has written (`wchar` of its `/proc/.../io`).
fn cpu_times() -> (Duration, Duration, u64) {
    let process = cpu_time(std::path::Path::new("/proc/self/stat"));
    let writer = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with("embedded-store"))
        });
    let Some(writer) = writer else {
        return (process, Duration::ZERO, 0);
    };
    let written = std::fs::read_to_string(writer.path().join("io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("wchar: ")?.trim().parse().ok())
        })
        .unwrap_or(0);
    (process, cpu_time(&writer.path().join("stat")), written)
}

fn bus(store: Arc<EmbeddedStore>) -> Bus {
    // The contract suite's policy: enough attempts that a hot SKU's losers always get through.
    let retry = RetryPolicy {
        max_attempts: 100,
        ..RetryPolicy::default()
    };
    Bootstrap::new(store).retry(retry).build()
}

async fn create_sku(bus: &Bus, sku: &str) {
    let cmd = CreateBatch::new(format!("{sku}-batch"), sku, STOCK, None).unwrap();
    bus.handle(&cmd, None).await.expect("create batch");
}

/// `total` allocations by `tasks` concurrent tasks, each on a random SKU of `skus`; answers the errors.
async fn allocate(bus: &Arc<Bus>, skus: &Arc<Vec<String>>, tasks: usize, total: u64) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (bus, skus, next) = (Arc::clone(bus), Arc::clone(skus), Arc::clone(&next));
            tokio::spawn(async move {
                let mut errors = 0;
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let sku = skus[fastrand::usize(..skus.len())].clone();
                    let orderid = format!("order-{}", ORDERS.fetch_add(1, Ordering::Relaxed));
                    // Through the product's queue, as the HTTP edge allocates.
                    let result: Result<String, ServiceError> = bus
                        .handle(&Allocate::new(orderid, sku, 1).unwrap(), None)
                        .await;
                    if result.is_err() {
                        errors += 1;
                    }
                }
                errors
            })
        })
        .collect();
    let mut errors = 0;
    for handle in handles {
        errors += handle.await.unwrap_or(1);
    }
    errors
}

fn report(name: &str, store: &EmbeddedStore, observed: &Observed) {
    if observed.allocations == 0 {
        return; // filtered out
    }
    let seconds = observed.elapsed.as_secs_f64().max(1e-9);
    let per_allocation = |cpu: Duration| cpu.as_secs_f64() * 1e6 / observed.allocations as f64;
    let stats = store.stats();
    println!(
        "{name}: {:.0} allocations/s, {:.0} fsyncs/s, {:.2} commits per fsync (largest group so far \
         {}, mean durable commit {:.0} us), {} version conflicts, {} errors; CPU per allocation \
         {:.0} us (writer thread {:.0} us); {:.0} KB written per fsync; {} records read (so far)",
        observed.allocations as f64 / seconds,
        observed.fsyncs as f64 / seconds,
        observed.commits as f64 / (observed.fsyncs.max(1)) as f64,
        stats.largest_group,
        stats.durable_commit_time.as_secs_f64() * 1e6 / stats.group_commits.max(1) as f64,
        observed.rejected,
        observed.errors,
        per_allocation(observed.cpu),
        per_allocation(observed.writer_cpu),
        observed.written as f64 / 1024.0 / observed.fsyncs.max(1) as f64,
        stats.records_read,
    );
}

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}

/// A store in a temporary directory with 1,000 SKUs, made on first use (not for filtered-out cases).
struct Fixture {
    store: Arc<EmbeddedStore>,
    bus: Arc<Bus>,
    skus: Arc<Vec<String>>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(runtime: &tokio::runtime::Runtime) -> Self {
        let read_mode = match std::env::var("EMBEDDED_READ_MODE").as_deref() {
            Ok("blocking") => ReadMode::Blocking,
            _ => ReadMode::Inline,
        };
        // EMBEDDED_BENCH_DIR=/dev/shm: the store on tmpfs, where fsync is free (the CPU-bound figure).
        let dir = match std::env::var_os("EMBEDDED_BENCH_DIR") {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .expect("temporary directory");
        let mut options = EmbeddedOptions {
            read_mode,
            ..EmbeddedOptions::default()
        };
        if let Some(mb) = env_number("EMBEDDED_CACHE_MB") {
            options.cache_size = mb << 20;
        }
        let store = Arc::new(EmbeddedStore::open_with(dir.path(), options).expect("open store"));
        let bus = Arc::new(bus(Arc::clone(&store)));
        let skus: Arc<Vec<String>> = Arc::new((0..SKUS).map(|n| format!("SKU-{n:04}")).collect());
        runtime.block_on(async {
            for sku in skus.iter() {
                create_sku(&bus, sku).await;
            }
        });
        Self {
            store,
            bus,
            skus,
            _dir: dir,
        }
    }

    /// `iters` timed runs of `per_iter` allocations by `tasks` tasks on the SKUs `prepare` gives
    /// (untimed); adds what the store's counters saw to `observed`.
    fn timed(
        &self,
        runtime: &tokio::runtime::Runtime,
        prepare: &dyn Fn(&Self) -> Arc<Vec<String>>,
        tasks: usize,
        per_iter: u64,
        iters: u64,
        observed: &Mutex<Observed>,
    ) -> Duration {
        let mut elapsed = Duration::ZERO;
        for _ in 0..iters {
            let skus = prepare(self);
            let before = self.store.stats();
            let cpu_before = cpu_times();
            let start = Instant::now();
            let errors = runtime.block_on(allocate(&self.bus, &skus, tasks, per_iter));
            let took = start.elapsed();
            let after = self.store.stats();
            let cpu_after = cpu_times();
            elapsed += took;
            let mut o = observed.lock().unwrap_or_else(|p| p.into_inner());
            o.elapsed += took;
            o.allocations += per_iter;
            o.fsyncs += after.group_commits - before.group_commits;
            o.commits += after.commits - before.commits;
            o.rejected += after.rejected - before.rejected;
            o.errors += errors;
            o.cpu += cpu_after.0.saturating_sub(cpu_before.0);
            o.writer_cpu += cpu_after.1.saturating_sub(cpu_before.1);
            o.written += cpu_after.2.saturating_sub(cpu_before.2);
        }
        elapsed
    }
}

fn embedded_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cell = std::cell::OnceCell::new();
    let fixture = || cell.get_or_init(|| Fixture::new(&runtime));

    let mut group = c.benchmark_group("embedded_commit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sampling_mode(SamplingMode::Flat);

    group.throughput(Throughput::Elements(MANY_PER_ITER));
    for tasks in CONCURRENCY {
        let observed = Mutex::new(Observed::default());
        let many = |f: &Fixture| Arc::clone(&f.skus);
        group.bench_function(BenchmarkId::new("many_skus", tasks), |b| {
            let f = fixture();
            b.iter_custom(|iters| f.timed(&runtime, &many, tasks, MANY_PER_ITER, iters, &observed))
        });
        let observed = observed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = cell.get() {
            report(&format!("many_skus/{tasks}"), &f.store, &observed);
        }
    }

    group.throughput(Throughput::Elements(HOT_PER_ITER));
    for tasks in CONCURRENCY {
        let observed = Mutex::new(Observed::default());
        // A fresh hot SKU per run, so every run starts from the same (empty) product.
        let hot = |f: &Fixture| {
            let sku = format!("HOT-{}", ORDERS.fetch_add(1, Ordering::Relaxed));
            runtime.block_on(create_sku(&f.bus, &sku));
            Arc::new(vec![sku])
        };
        group.bench_function(BenchmarkId::new("hot_sku", tasks), |b| {
            let f = fixture();
            b.iter_custom(|iters| f.timed(&runtime, &hot, tasks, HOT_PER_ITER, iters, &observed))
        });
        let observed = observed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = cell.get() {
            report(&format!("hot_sku/{tasks}"), &f.store, &observed);
        }
    }
    group.finish();
}

/// `Store::load` of one product (for one order) with 100 and 10,000 lines: what a load costs as a
/// product's history grows (it should not grow).
fn embedded_load(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("embedded_load");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for lines in [100u64, 10_000] {
        group.bench_function(BenchmarkId::new("product_and_one_line", lines), |b| {
            let dir = tempfile::tempdir().expect("temporary directory");
            let store = Arc::new(
                EmbeddedStore::open_with(dir.path(), EmbeddedOptions::default())
                    .expect("open store"),
            );
            let bus = Arc::new(bus(Arc::clone(&store)));
            let sku = format!("LOAD-{lines}");
            runtime.block_on(async {
                create_sku(&bus, &sku).await;
                // All the lines in one commit: quick to set up, the same records as one by one.
                let mut uow = bus.unit_of_work(None);
                let ids: Vec<String> = (0..lines).map(|n| format!("{sku}-order-{n}")).collect();
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                let product = uow.get(&sku, &refs).await.expect("load").expect("product");
                for id in &ids {
                    let line = OrderLine::parse(id, &sku, 1).expect("line");
                    product.allocate(&line).expect("allocate");
                }
                uow.commit().await.expect("commit");
            });
            let order = format!("{sku}-order-7");
            b.iter(|| runtime.block_on(store.load(&sku, &[&order])).expect("load"))
        });
    }
    group.finish();
}

criterion_group!(benches, embedded_commit, embedded_load);
criterion_main!(benches);
