//! Benchmark: `Product::allocate` on a product with 20 batches, empty and with 100,000 lines allocated.
//! Goal (issue 2): ≤ 300 ns per allocation, and the two cases within 2× of each other.

use std::hint::black_box;
use std::time::{Duration, Instant};

use allocation::domain::{Batch, OrderLine, Product};
use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion};

const SKU: &str = "BENCH-SKU";
const BATCHES: u32 = 20;

/// 20 batches: one in stock, the others arriving on successive days; big enough never to run out.
fn product_with_lines(lines: usize) -> Product {
    let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    let batches = (0..BATCHES)
        .map(|n| {
            let eta = (n > 0).then(|| start + chrono::Days::new(n.into()));
            Batch::new(format!("batch-{n:02}"), SKU, 200_000_000, eta).expect("valid batch")
        })
        .collect();
    let mut product = Product::restore(SKU, 0, batches).expect("valid product");
    for n in 0..lines {
        let line = OrderLine::new(format!("prefill-{n}"), SKU, 1).expect("valid line");
        product.allocate(&line).expect("same sku");
    }
    product.take_events();
    product.clear_changes();
    product
}

/// Times `iters` allocations of fresh lines on a copy of `base` (the copy and the lines are made
/// outside the timed part).
fn time_allocations(base: &Product, iters: u64) -> Duration {
    let mut product = base.clone();
    let lines: Vec<OrderLine> = (0..iters)
        .map(|n| OrderLine::new(format!("order-{n}"), SKU, 3).expect("valid line"))
        .collect();
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
    for lines in [0usize, 100_000] {
        let base = product_with_lines(lines);
        group.bench_function(format!("{lines}_lines_allocated"), |b| {
            b.iter_custom(|iters| time_allocations(&base, iters))
        });
    }
    group.finish();
}

criterion_group!(benches, allocate);
criterion_main!(benches);
