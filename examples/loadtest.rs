//! Load test of `POST /allocate` against a running local server: a small HTTP/1.1 keep-alive client.
//!
//! ```text
//! cargo run --release --no-default-features --features local --example loadtest -- \
//!     --addr 127.0.0.1:5005 --connections 1,4,16 --seconds 10 --skus 1000
//! ```
//! For each connection count it runs two scenarios: "many SKUs" (each request picks one of `--skus`
//! products, round robin) and "hot SKU" (every request allocates from one product). Every line is a new
//! order line of quantity 1, answered 201 from a batch big enough for the whole run. It prints one
//! Markdown table row per run and, with `--json FILE`, writes the results as JSON lines. scripts/loadtest.sh
//! starts the server, runs this and writes docs/performance.md. `--prefill N` first allocates N lines
//! on the hot SKU (untimed), so the hot runs start from a product with a long history.
//!
//! `--growth 0,10000,50000 [--samples 300]` measures instead how one SKU's history affects an
//! allocation: for each level it fills the SKU up to that many earlier lines (16 connections, untimed),
//! waits `--settle` seconds (10 by default: the server's relay delivers the fill's events), then times
//! `--samples` sequential allocations on one connection, and prints their median and p90
//! (scripts/growth.sh).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
struct Options {
    addr: String,
    connections: Vec<usize>,
    seconds: f64,
    warmup_seconds: f64,
    skus: usize,
    scenarios: Vec<String>,
    json: Option<String>,
    prefix: String,
    /// The server's pid, to measure its CPU time during each run (Linux /proc).
    server_pid: Option<u32>,
    /// Lines allocated on the hot SKU before its timed runs.
    prefill: usize,
    /// Levels of earlier lines for the growth measurement (empty: the load scenarios).
    growth: Vec<usize>,
    samples: usize,
    /// Seconds to wait after filling a growth level, before timing it.
    settle_seconds: f64,
}

fn options() -> Options {
    let mut options = Options {
        addr: "127.0.0.1:5005".into(),
        connections: vec![1, 4, 16],
        seconds: 10.0,
        warmup_seconds: 1.0,
        skus: 1000,
        scenarios: vec!["many".into(), "hot".into()],
        json: None,
        prefix: format!("lt{:x}", std::process::id()),
        server_pid: None,
        prefill: 0,
        growth: Vec::new(),
        samples: 300,
        settle_seconds: 10.0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--addr" => options.addr = value,
            "--connections" => {
                options.connections = value
                    .split(',')
                    .map(|c| c.parse().expect("connections"))
                    .collect()
            }
            "--seconds" => options.seconds = value.parse().expect("seconds"),
            "--warmup" => options.warmup_seconds = value.parse().expect("warmup seconds"),
            "--skus" => options.skus = value.parse().expect("skus"),
            "--scenarios" => options.scenarios = value.split(',').map(str::to_owned).collect(),
            "--json" => options.json = Some(value),
            "--prefix" => options.prefix = value,
            "--server-pid" => options.server_pid = Some(value.parse().expect("pid")),
            "--prefill" => options.prefill = value.parse().expect("prefill lines"),
            "--growth" => {
                options.growth = value
                    .split(',')
                    .map(|c| c.parse().expect("growth level"))
                    .collect()
            }
            "--samples" => options.samples = value.parse().expect("samples"),
            "--settle" => options.settle_seconds = value.parse().expect("settle seconds"),
            other => {
                eprintln!("unknown option {other}; see the top of examples/loadtest.rs");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    options
}

/// A keep-alive HTTP/1.1 connection.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Sends a POST with a JSON body and answers the status and body.
    async fn post(&mut self, path: &str, body: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: loadtest\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes()).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        let invalid =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end]).map_err(|_| invalid("head"))?;
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| invalid("status"))?;
                let length: usize = head
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, value)| value.trim().parse().ok())
                    .ok_or_else(|| invalid("content-length"))?;
                let total = end + 4 + length;
                while self.buffer.len() < total {
                    self.fill().await?;
                }
                let body = self.buffer[end + 4..total].to_vec();
                self.buffer.drain(..total);
                return Ok((status, body));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed",
            ));
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn sku_name(prefix: &str, scenario: &str, index: usize) -> String {
    format!("{prefix}-{scenario}-SKU-{index:05}")
}

/// Creates the products: `count` SKUs, each with one in-stock batch big enough for any run.
async fn setup(options: &Options, scenario: &str, count: usize) {
    let mut connection = Connection::open(&options.addr)
        .await
        .expect("connect for setup");
    for index in 0..count {
        let sku = sku_name(&options.prefix, scenario, index);
        let body = format!(r#"{{"ref":"{sku}-batch","sku":"{sku}","qty":1000000000,"eta":null}}"#);
        let (status, answer) = connection
            .post("/add_batch", &body)
            .await
            .expect("add_batch");
        // 409: the batch exists from an earlier run with the same --prefix; allocate from it again.
        assert!(
            status == 201 || status == 409,
            "add_batch: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[derive(Debug, Default)]
struct Run {
    latencies_us: Vec<u32>,
    errors: u64,
    statuses: std::collections::BTreeMap<u16, u64>,
}

async fn client(
    options: Options,
    scenario: String,
    skus: usize,
    id: usize,
    warmup_until: Instant,
    stop_at: Instant,
) -> Run {
    let mut run = Run::default();
    let mut connection = match Connection::open(&options.addr).await {
        Ok(connection) => connection,
        Err(_) => {
            run.errors += 1;
            return run;
        }
    };
    let mut n: usize = 0;
    loop {
        let now = Instant::now();
        if now >= stop_at {
            break;
        }
        let sku = sku_name(&options.prefix, &scenario, (id + n * 7919) % skus);
        let body = format!(
            r#"{{"orderid":"{}-{scenario}-c{id}-{n}","sku":"{sku}","qty":1}}"#,
            options.prefix
        );
        n += 1;
        let started = Instant::now();
        let result = connection.post("/allocate", &body).await;
        let elapsed = started.elapsed();
        match result {
            Ok((status, _)) => {
                if started >= warmup_until {
                    *run.statuses.entry(status).or_default() += 1;
                    if status == 201 {
                        run.latencies_us
                            .push(elapsed.as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        run.errors += 1;
                    }
                }
            }
            Err(_) => {
                run.errors += 1;
                match Connection::open(&options.addr).await {
                    Ok(fresh) => connection = fresh,
                    Err(_) => break,
                }
            }
        }
    }
    run
}

/// The process's CPU time (user + system), in seconds, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks; USER_HZ is 100 on every mainstream configuration.
    Some((utime + stime) / 100.0)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

/// Allocates `lines` new lines of qty 1 on `sku` over 16 connections, untimed; panics on any non-201.
async fn fill(options: &Options, sku: &str, tag: &str, lines: usize) {
    let connections = 16.min(lines.max(1));
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (addr, sku, tag, prefix) = (
                options.addr.clone(),
                sku.to_owned(),
                tag.to_owned(),
                options.prefix.clone(),
            );
            tokio::spawn(async move {
                let mut connection = Connection::open(&addr).await.expect("connect for fill");
                for n in (c..lines).step_by(connections) {
                    let body = format!(
                        r#"{{"orderid":"{prefix}-{tag}-fill-{n:08}","sku":"{sku}","qty":1}}"#
                    );
                    let (status, answer) =
                        connection.post("/allocate", &body).await.expect("allocate");
                    assert_eq!(status, 201, "fill: {}", String::from_utf8_lossy(&answer));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("fill task");
    }
}

/// The growth measurement (see the module documentation).
async fn growth(options: &Options) {
    setup(options, "growth", 1).await;
    let sku = sku_name(&options.prefix, "growth", 0);
    println!("| earlier lines on the SKU | samples | median ms | p90 ms | median / median at the first level |");
    println!("|---:|---:|---:|---:|---:|");
    let mut filled = 0;
    let mut first_median = None;
    let mut connection = Connection::open(&options.addr).await.expect("connect");
    for &level in &options.growth {
        if level > filled {
            fill(options, &sku, &format!("to{level}"), level - filled).await;
            filled = level;
            // Let the server's relay deliver the fill's events first: the backlog is not history.
            tokio::time::sleep(Duration::from_secs_f64(options.settle_seconds)).await;
        }
        let mut latencies = Vec::with_capacity(options.samples);
        for n in 0..options.samples {
            let body = format!(
                r#"{{"orderid":"{}-growth-{level}-{n}","sku":"{sku}","qty":1}}"#,
                options.prefix
            );
            let started = Instant::now();
            let (status, answer) = connection.post("/allocate", &body).await.expect("allocate");
            let elapsed = started.elapsed();
            assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
            latencies.push(elapsed.as_micros().min(u32::MAX as u128) as u32);
        }
        filled += options.samples;
        latencies.sort_unstable();
        let (median, p90) = (percentile(&latencies, 50.0), percentile(&latencies, 90.0));
        let first = *first_median.get_or_insert(median);
        println!(
            "| {level} | {} | {median:.2} | {p90:.2} | {:.2} |",
            options.samples,
            median / first
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let options = options();
    if !options.growth.is_empty() {
        growth(&options).await;
        return;
    }
    let mut json_lines = Vec::new();
    println!("| scenario | connections | requests | allocations/s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for scenario in &options.scenarios {
        let skus = if scenario == "hot" { 1 } else { options.skus };
        setup(&options, scenario, skus).await;
        if scenario == "hot" && options.prefill > 0 {
            let sku = sku_name(&options.prefix, scenario, 0);
            fill(&options, &sku, "prefill", options.prefill).await;
        }
        for &connections in &options.connections {
            let start = Instant::now();
            let warmup_until = start + Duration::from_secs_f64(options.warmup_seconds);
            let stop_at = warmup_until + Duration::from_secs_f64(options.seconds);
            let tasks: Vec<_> = (0..connections)
                .map(|id| {
                    tokio::spawn(client(
                        options.clone(),
                        scenario.clone(),
                        skus,
                        id + connections * 1000,
                        warmup_until,
                        stop_at,
                    ))
                })
                .collect();
            let cpu = options.server_pid.map(|pid| {
                tokio::spawn(async move {
                    tokio::time::sleep_until(warmup_until.into()).await;
                    let before = cpu_seconds(pid);
                    tokio::time::sleep_until(stop_at.into()).await;
                    Some(cpu_seconds(pid)? - before?)
                })
            });
            let mut all = Run::default();
            for task in tasks {
                let run = task.await.expect("client task");
                all.latencies_us.extend(run.latencies_us);
                all.errors += run.errors;
                for (status, count) in run.statuses {
                    *all.statuses.entry(status).or_default() += count;
                }
            }
            let measured = options.seconds;
            let server_cpu = match cpu {
                Some(task) => task.await.ok().flatten(),
                None => None,
            };
            let cpu_percent = server_cpu.map_or(f64::NAN, |cpu| 100.0 * cpu / measured);
            all.latencies_us.sort_unstable();
            let ok = all.latencies_us.len();
            let throughput = ok as f64 / measured;
            let (p50, p90, p99) = (
                percentile(&all.latencies_us, 50.0),
                percentile(&all.latencies_us, 90.0),
                percentile(&all.latencies_us, 99.0),
            );
            let max = all
                .latencies_us
                .last()
                .map_or(f64::NAN, |m| f64::from(*m) / 1000.0);
            let label = if scenario == "hot" {
                "hot SKU (1)".to_owned()
            } else {
                format!("many SKUs ({skus})")
            };
            println!(
                "| {label} | {connections} | {} | {throughput:.0} | {p50:.2} | {p90:.2} | {p99:.2} | {max:.2} | {} | {cpu_percent:.0}% |",
                ok + all.errors as usize,
                all.errors
            );
            let statuses: Vec<String> = all
                .statuses
                .iter()
                .map(|(s, c)| format!("\"{s}\":{c}"))
                .collect();
            json_lines.push(format!(
                r#"{{"scenario":"{scenario}","skus":{skus},"connections":{connections},"ok":{ok},"errors":{},"seconds":{measured},"throughput":{throughput:.1},"p50_ms":{p50:.3},"p90_ms":{p90:.3},"p99_ms":{p99:.3},"max_ms":{max:.3},"server_cpu_percent":{},"statuses":{{{}}}}}"#,
                all.errors,
                if cpu_percent.is_nan() { "null".to_owned() } else { format!("{cpu_percent:.1}") },
                statuses.join(",")
            ));
        }
    }
    if let Some(path) = &options.json {
        std::fs::write(path, json_lines.join("\n") + "\n").expect("write the JSON results");
    }
}
