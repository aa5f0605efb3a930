//! Benchmark: `Product::allocate` on a product with 20 batches. Goal: ≤ 300 ns per allocation on an
//! empty product, and within 1.5× of that with 100,000 lines.
//!
//! Three products:
//! - `empty`: a new product, no lines;
//! - `100000_lines_in_memory`: the same after 100,000 allocations held in memory (the worst case of
//!   the line index: a long-lived product that knows every line);
//! - `loaded_after_100000_lines`: the product as a store loads it for one command after 100,000
//!   allocations: batches with their totals and only the order's own line (known absent).

use std::hint::black_box;
use std::time::{Duration, Instant};

use allocation::domain::{Batch, OrderLine, Product};
use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion};

const SKU: &str = "BENCH-SKU";
const BATCHES: u32 = 20;
const HISTORY: u64 = 100_000;

/// 20 batches: one in stock, the others arriving on successive days; big enough never to run out.
fn batches(allocated: u64) -> Vec<Batch> {
    let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    (0..BATCHES)
        .map(|n| {
            let eta = (n > 0).then(|| start + chrono::Days::new(n.into()));
            let allocated = if n == 0 { allocated } else { 0 };
            Batch::restore(format!("batch-{n:02}"), SKU, 200_000_000, eta, allocated)
                .expect("valid batch")
        })
        .collect()
}

fn empty() -> Product {
    Product::with_batches(SKU, batches(0)).expect("valid product")
}

fn with_lines_in_memory(lines: u64) -> Product {
    let mut product = empty();
    for n in 0..lines {
        let line = OrderLine::parse(format!("prefill-{n}"), SKU, 1).expect("valid line");
        product.allocate(&line).expect("same sku");
    }
    product.take_events();
    product.clear_changes();
    product
}

fn lines(iters: u64) -> Vec<OrderLine> {
    (0..iters)
        .map(|n| OrderLine::parse(format!("order-{n}"), SKU, 3).expect("valid line"))
        .collect()
}

/// Times `iters` allocations of fresh lines on a copy of `base` (the copy, the lines and, for a
/// loaded product, the load of each order's line are made outside the timed part).
fn time_allocations(base: &Product, loaded: bool, iters: u64) -> Duration {
    let mut product = base.clone();
    let lines = lines(iters);
    if loaded {
        for line in &lines {
            product.restore_no_line(line.orderid());
        }
    }
    let start = Instant::now();
    for line in &lines {
        black_box(product.allocate(black_box(line)).ok());
    }
    let elapsed = start.elapsed();
    drop(product);
    elapsed
}

fn allocate(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocate_20_batches");
    let cases = [
        ("empty", empty(), false),
        (
            "100000_lines_in_memory",
            with_lines_in_memory(HISTORY),
            false,
        ),
        (
            "loaded_after_100000_lines",
            Product::restore(SKU, HISTORY + 20, batches(HISTORY), None).expect("valid product"),
            true,
        ),
    ];
    for (name, base, loaded) in &cases {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| time_allocations(base, *loaded, iters))
        });
    }
    group.finish();
}

criterion_group!(benches, allocate);
criterion_main!(benches);
