//! The embedded store's durability and relay support: data survives reopening and kill -9 (a child
//! process, this very test binary re-executed, is SIGKILLed mid-stream), the pending outbox is in
//! commit order, delivery marks and dead letters round-trip, and failures answer instead of hanging.
use allocation::domain::{Allocated, AllocationRequired};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allocation::adapters::embedded::{EmbeddedStore, DATABASE_FILE};
use allocation::domain::{Allocate, CreateBatch, Event, EventEnvelope};
use allocation::service::{
    AllocationsView, EventWiring, OutboxAudit, OutboxFeed, ProductRepository, ServiceError,
    StoreError,
};

type Bus = allocation::service::MessageBus<EmbeddedStore>;

/// Set in the re-executed child: the directory of its store.
const CHILD_DIR: &str = "EMBEDDED_DURABILITY_CHILD_DIR";
const CHILD_SKUS: usize = 6;

/// The contract suite's bus (generous retries: the racing cases end by retrying).
fn bus(store: &Arc<EmbeddedStore>) -> Bus {
    crate::support::contract::bus(Arc::clone(store))
}

async fn create_batch(bus: &Bus, reference: &str, sku: &str, qty: u32) {
    let cmd = CreateBatch::new(reference, sku, qty, None).unwrap();
    bus.handle(&cmd, None).await.expect("create batch");
}

async fn allocate(bus: &Bus, orderid: &str, sku: &str) -> String {
    let cmd = Allocate::new(orderid, sku, 1).unwrap();
    bus.handle(&cmd, None).await.expect("allocate")
}

fn open(dir: &Path) -> Arc<EmbeddedStore> {
    Arc::new(EmbeddedStore::open(dir).expect("open embedded store"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let bus = bus(&store);
        create_batch(&bus, "b-1", "LAMP", 10).await;
        assert_eq!(allocate(&bus, "o-1", "LAMP").await, "b-1");
        assert_eq!(allocate(&bus, "o-2", "LAMP").await, "b-1");
    }
    assert!(dir.path().join(DATABASE_FILE).is_file());
    let store = open(dir.path());
    let product = store.load("LAMP", &[]).await.unwrap().expect("stored");
    assert_eq!(product.version_number(), 3);
    assert_eq!(product.batch("b-1").unwrap().available_quantity(), 8);
    assert_eq!(
        store.sku_of_batch("b-1").await.unwrap().as_deref(),
        Some("LAMP")
    );
    let views = store.allocations_for_order("o-2").await.unwrap();
    assert_eq!(
        views
            .iter()
            .map(|v| (v.sku.as_str(), v.batchref.as_deref()))
            .collect::<Vec<_>>(),
        [("LAMP", Some("b-1"))]
    );
    let pending = store.pending_outbox(10).await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|(seq, e)| (*seq, e.id.as_str()))
            .collect::<Vec<_>>(),
        [(1, "LAMP:2:0"), (2, "LAMP:3:0")]
    );
    // The sequence continues after a reopen; it never reuses a number.
    assert_eq!(allocate(&bus(&store), "o-3", "LAMP").await, "b-1");
    let pending = store.pending_outbox(10).await.unwrap();
    assert_eq!(pending.last().map(|(seq, _)| *seq), Some(3));
}

/// The child: allocates on several SKUs concurrently, forever, printing each acknowledged allocation;
/// a relay task marks events delivered and prints each acknowledged mark. Does nothing in a normal run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_entry() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let store = open(Path::new(&dir));
    let bus = Arc::new(bus(&store));
    for n in 0..CHILD_SKUS {
        create_batch(
            &bus,
            &format!("batch-{n}"),
            &format!("SKU-{n}"),
            1_000_000_000,
        )
        .await;
    }
    println!("READY");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for n in 0..CHILD_SKUS {
        let bus = Arc::clone(&bus);
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                if Instant::now() > deadline {
                    break;
                }
                let (orderid, sku) = (format!("order-{n}-{i}"), format!("SKU-{n}"));
                let batchref = allocate(&bus, &orderid, &sku).await;
                println!("ACK {orderid} {sku} {batchref}");
            }
        }));
    }
    let relay = Arc::clone(&store);
    tasks.push(tokio::spawn(async move {
        while Instant::now() < deadline {
            let pending = relay.pending_outbox(7).await.expect("pending");
            let seqs: Vec<u64> = pending.iter().map(|(seq, _)| *seq).collect();
            relay.mark_delivered(&seqs).await.expect("mark delivered");
            for seq in seqs {
                println!("DELIVERED {seq}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }));
    for task in tasks {
        task.await.expect("child task");
    }
}

/// Reads one line of the child's output.
fn record(
    line: &str,
    acked: &mut BTreeMap<String, (String, String)>,
    delivered: &mut BTreeSet<u64>,
) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["ACK", order, sku, batch] => {
            acked.insert(order.to_string(), (sku.to_string(), batch.to_string()));
        }
        ["DELIVERED", seq] => {
            delivered.insert(seq.parse().expect("sequence number"));
        }
        _ => {}
    }
}

#[test]
fn acknowledged_commits_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "embedded_durability::child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("re-execute the test binary");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();

    let mut acked: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut delivered: BTreeSet<u64> = BTreeSet::new();
    let started = Instant::now();
    let mut ready = false;
    let target = 400 + fastrand::usize(..200);
    for line in lines.by_ref() {
        let line = line.expect("child output");
        ready |= line.ends_with("READY"); // libtest may prefix the first line
        record(&line, &mut acked, &mut delivered);
        if acked.len() >= target || started.elapsed() > Duration::from_secs(50) {
            break;
        }
    }
    assert!(ready, "the child started");
    child.kill().expect("SIGKILL the child");
    // Lines already written before the kill are acknowledged commits too.
    for line in lines {
        match line {
            Ok(line) => record(&line, &mut acked, &mut delivered),
            Err(_) => break,
        }
    }
    let status = child.wait().expect("child exit");
    assert!(!status.success(), "the child was killed mid-stream");
    assert!(
        acked.len() >= 100,
        "only {} acknowledged allocations",
        acked.len()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = open(dir.path());
        for (order, (sku, batch)) in &acked {
            let views = store.allocations_for_order(order).await.unwrap();
            assert_eq!(views.len(), 1, "acknowledged order {order} is stored");
            assert_eq!(
                (&views[0].sku, views[0].batchref.as_ref()),
                (sku, Some(batch))
            );
        }
        let check = store
            .check_outbox()
            .await
            .expect("outbox and pending index agree");
        assert_eq!(check.pending + check.delivered, check.events);
        let pending: BTreeSet<u64> = store
            .pending_outbox(usize::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(pending.len() as u64, check.pending);
        assert!(
            pending.is_disjoint(&delivered),
            "an event acknowledged as delivered is pending again"
        );

        let mut events = 0u64;
        for n in 0..CHILD_SKUS {
            let sku = format!("SKU-{n}");
            let outbox = store.outbox(&sku).await.unwrap();
            let allocated: BTreeSet<String> = outbox
                .iter()
                .map(|e| match &e.event {
                    Event::Allocated(Allocated { orderid, .. }) => orderid.to_string(),
                    other => panic!("unexpected event {other:?}"),
                })
                .collect();
            let ids: Vec<&str> = allocated.iter().map(String::as_str).collect();
            let product = store.load(&sku, &ids).await.unwrap().expect("product");
            let lines: BTreeSet<String> = ids
                .iter()
                .filter(|o| product.allocation_of(o).is_some())
                .map(|o| (*o).to_owned())
                .collect();
            // One version for the batch, one per committed allocation; one event per allocation.
            assert_eq!(product.version_number(), 1 + lines.len() as u64);
            let total: u64 = product
                .batches()
                .iter()
                .map(|b| b.allocated_quantity())
                .sum();
            let stored_lines: u64 = ids
                .iter()
                .filter_map(|o| product.line(o).map(|(_, qty)| u64::from(qty)))
                .sum();
            assert_eq!(total, stored_lines, "the totals of {sku} match its lines");
            assert_eq!(allocated, lines, "the outbox of {sku} matches its state");
            events += outbox.len() as u64;
            for order in acked.iter().filter(|(_, (s, _))| *s == sku).map(|(o, _)| o) {
                assert!(lines.contains(order), "acknowledged {order} is in {sku}");
            }
        }
        assert_eq!(events, check.events);
        eprintln!(
            "kill -9: {} acknowledged, {} committed, {} delivered marks acknowledged, {} pending",
            acked.len(),
            events,
            delivered.len(),
            check.pending
        );
        assert!(events >= acked.len() as u64);

        // The reopened store goes on working, and numbering goes on after the last event.
        let bus = bus(&store);
        allocate(&bus, "after-restart", "SKU-0").await;
        let last = store.pending_outbox(usize::MAX).await.unwrap();
        assert_eq!(last.last().map(|(seq, _)| *seq), Some(check.next_seq));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_outbox_is_in_commit_order_and_delivery_marks_remove_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let bus = bus(&store);
    let mut commits = store.subscribe_commits();
    assert_eq!(*commits.borrow_and_update(), 0);
    create_batch(&bus, "mug-1", "MUG", 10).await;
    create_batch(&bus, "cup-1", "CUP", 10).await;
    assert!(!commits.has_changed().unwrap(), "no event, no signal");
    for (order, sku) in [
        ("o1", "MUG"),
        ("o2", "CUP"),
        ("o3", "MUG"),
        ("o4", "CUP"),
        ("o5", "MUG"),
    ] {
        allocate(&bus, order, sku).await;
    }
    assert!(commits.has_changed().unwrap());
    assert_eq!(*commits.borrow_and_update(), 5);

    let orders = |events: &[(u64, EventEnvelope)]| -> Vec<(u64, String)> {
        events
            .iter()
            .map(|(seq, e)| match &e.event {
                Event::Allocated(Allocated { orderid, .. }) => (*seq, orderid.to_string()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    };
    let first = store.pending_outbox(3).await.unwrap();
    assert_eq!(
        orders(&first),
        [(1, "o1".into()), (2, "o2".into()), (3, "o3".into())]
    );
    assert_eq!(store.mark_delivered(&[1, 3]).await.unwrap(), 2);
    assert_eq!(
        store.mark_delivered(&[1, 3, 99]).await.unwrap(),
        0,
        "idempotent"
    );
    let rest = store.pending_outbox(100).await.unwrap();
    assert_eq!(
        orders(&rest),
        [(2, "o2".into()), (4, "o4".into()), (5, "o5".into())]
    );
    // The outbox keeps delivered events.
    assert_eq!(store.outbox("MUG").await.unwrap().len(), 3);
    let check = store.check_outbox().await.unwrap();
    assert_eq!((check.events, check.pending, check.delivered), (5, 3, 2));

    // A waiting relay wakes when the next event commits.
    let waiter = {
        let mut commits = store.subscribe_commits();
        tokio::spawn(async move {
            commits.changed().await.expect("signal");
            *commits.borrow()
        })
    };
    allocate(&bus, "o6", "CUP").await;
    let head = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(head, 6);
    assert_eq!(store.mark_delivered(&[2, 4, 5, 6]).await.unwrap(), 4);
    assert!(store.pending_outbox(10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_round_trip_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let envelope = |n: u64| EventEnvelope {
        id: format!("RUG:{n}:0"),
        correlation_id: Some(format!("req-{n}")),
        occurred_at: None,
        event: Event::AllocationRequired(AllocationRequired {
            orderid: format!("o{n}").into(),
            sku: "RUG".into(),
            qty: 2,
        }),
    };
    let before = chrono::Utc::now();
    {
        let store = open(dir.path());
        assert!(store.dead_letters().await.unwrap().is_empty());
        assert_eq!(
            store
                .add_dead_letter(&envelope(1), "handler failed: boom", 5)
                .await,
            Ok(1)
        );
        assert_eq!(
            store
                .add_dead_letter(&envelope(2), "store unavailable", 3)
                .await,
            Ok(2)
        );
    }
    let store = open(dir.path());
    let letters = store.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(
        (
            letters[0].id,
            &letters[0].envelope,
            letters[0].reason.as_str(),
            letters[0].attempts
        ),
        (1, &envelope(1), "handler failed: boom", 5)
    );
    assert_eq!((letters[1].id, letters[1].attempts), (2, 3));
    let now = chrono::Utc::now();
    assert!(letters
        .iter()
        .all(|l| l.failed_at >= before - chrono::Duration::seconds(1) && l.failed_at <= now));
    // failed_at travels as RFC 3339.
    let json = serde_json::to_value(&letters[0]).unwrap();
    let failed_at = json["failed_at"].as_str().expect("a string");
    assert!(
        chrono::DateTime::parse_from_rfc3339(failed_at).is_ok(),
        "{failed_at}"
    );
    assert_eq!(store.add_dead_letter(&envelope(3), "again", 1).await, Ok(3));
}

#[tokio::test]
async fn a_directory_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    match EmbeddedStore::open(dir.path()) {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("already in use"), "{message}");
            assert!(message.contains(DATABASE_FILE), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_path_that_cannot_be_a_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    match EmbeddedStore::open(&file.join("data")) {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("cannot create directory"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shutdown_writes_are_unavailable_and_reads_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let bus = bus(&store);
    create_batch(&bus, "b-1", "SOFA", 10).await;
    store.shutdown().await.unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        bus.handle(&Allocate::new("o-1", "SOFA", 1).unwrap(), None),
    )
    .await
    .expect("answers, never hangs");
    let unavailable = match &refused {
        Err(ServiceError::Store(StoreError::Unavailable(message))) => message.contains("writer"),
        _ => false,
    };
    assert!(unavailable, "{refused:?}");
    assert!(matches!(
        store.mark_delivered(&[1]).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(store.load("SOFA", &[]).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let bus = Arc::new(bus(&store));
    for n in 0..32 {
        create_batch(&bus, &format!("b-{n}"), &format!("SKU-{n}"), 100).await;
    }
    let before = store.stats();
    let tasks: Vec<_> = (0..32)
        .map(|n| {
            let bus = Arc::clone(&bus);
            tokio::spawn(async move {
                for i in 0..10 {
                    allocate(&bus, &format!("o-{n}-{i}"), &format!("SKU-{n}")).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let after = store.stats();
    let commits = after.commits - before.commits;
    let fsyncs = after.group_commits - before.group_commits;
    assert_eq!(commits, 320);
    assert_eq!(after.rejected, 0);
    assert!(fsyncs < commits, "{fsyncs} fsyncs for {commits} commits");
    assert!(after.largest_group > 1);
}

#[tokio::test]
async fn undecodable_stored_data_is_corrupt_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        create_batch(&bus(&store), "b-1", "DESK", 10).await;
    }
    {
        // Damage the batch record behind the store's back.
        let db = redb::Database::create(dir.path().join(DATABASE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let batches: redb::TableDefinition<(&str, &str), &[u8]> =
                redb::TableDefinition::new("batches");
            let mut table = txn.open_table(batches).unwrap();
            table
                .insert(("DESK", "b-1"), b"{not json".as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let store = open(dir.path());
    match store.load("DESK", &[]).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains("batches"), "{message}");
            assert!(message.contains("b-1"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Other data is still served.
    assert_eq!(
        store.sku_of_batch("b-1").await.unwrap().as_deref(),
        Some("DESK")
    );
}

/// Rewrites a file of today's layout as layout 2 had it: lines keyed (sku, order id) in
/// `allocations`, the `orders` read model beside them, schema version 2.
fn downgrade_to_layout_2(file: &Path) {
    use redb::{ReadableTable, TableDefinition};
    let lines: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("lines");
    let allocations: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("allocations");
    let orders: TableDefinition<(&str, &str), &str> = TableDefinition::new("orders");
    let meta: TableDefinition<&str, u64> = TableDefinition::new("meta");
    let db = redb::Database::create(file).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let new = txn.open_table(lines).unwrap();
        let mut old = txn.open_table(allocations).unwrap();
        let mut read_model = txn.open_table(orders).unwrap();
        for entry in new.iter().unwrap() {
            let (key, value) = entry.unwrap();
            let (orderid, sku) = key.value();
            old.insert((sku, orderid), value.value()).unwrap();
            let line: serde_json::Value = serde_json::from_slice(value.value()).unwrap();
            let batchref = line["batchref"].as_str().unwrap_or_default();
            read_model.insert((orderid, sku), batchref).unwrap();
        }
        txn.open_table(meta)
            .unwrap()
            .insert("schema_version", 2)
            .unwrap();
    }
    txn.delete_table(lines).unwrap();
    txn.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_layout_2_is_migrated_on_open_and_keeps_every_line() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let bus = bus(&store);
        create_batch(&bus, "b-1", "LAMP", 10).await;
        create_batch(&bus, "b-2", "DESK", 10).await;
        assert_eq!(allocate(&bus, "o-1", "LAMP").await, "b-1");
        assert_eq!(allocate(&bus, "o-1", "DESK").await, "b-2");
        assert_eq!(allocate(&bus, "o-2", "LAMP").await, "b-1");
    }
    downgrade_to_layout_2(&dir.path().join(DATABASE_FILE));

    let store = open(dir.path());
    let mut views = store.allocations_for_order("o-1").await.unwrap();
    views.sort_by(|a, b| a.sku.cmp(&b.sku));
    let views: Vec<_> = views
        .iter()
        .map(|v| (v.sku.as_str(), v.batchref.as_deref()))
        .collect();
    assert_eq!(views, [("DESK", Some("b-2")), ("LAMP", Some("b-1"))]);
    let bus = bus(&store);
    // The migrated line is the one a repeated allocation finds: same batch, nothing written.
    assert_eq!(allocate(&bus, "o-2", "LAMP").await, "b-1");
    let product = store.load("LAMP", &["o-2"]).await.unwrap().unwrap();
    assert_eq!(product.batch("b-1").unwrap().available_quantity(), 8);
    assert!(product.line("o-2").is_some());
    drop(bus);
    drop(store);
    // Migrated once: the file opens as layout 3 from now on.
    let store = open(dir.path());
    assert_eq!(store.allocations_for_order("o-2").await.unwrap().len(), 1);
}

/// Commits racing in the same groups: of several new products with one SKU exactly one is written
/// (the others are version conflicts and write nothing), of several new batches with one reference
/// exactly one, and the unrelated commits of the same groups all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_in_a_group_writes_nothing_and_the_others_land() {
    use allocation::domain::{Batch, Product};
    use allocation::service::UnitOfWork;

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tasks: Vec<_> = (0..24)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                // 0..8: the same SKU; 8..16: the same batch reference on distinct SKUs; 16..24: unique.
                let (sku, reference) = match n {
                    0..8 => ("SAME-SKU".to_owned(), format!("same-sku-b{n}")),
                    8..16 => (format!("SKU-{n}"), "same-ref".to_owned()),
                    _ => (format!("SKU-{n}"), format!("b{n}")),
                };
                let mut uow = UnitOfWork::new(store, EventWiring::outbox(), None);
                let product = uow.add(Product::parse(&sku).unwrap());
                product
                    .add_batch(Batch::parse(&reference, &sku, 10, None).unwrap())
                    .unwrap();
                (n, sku, reference, uow.commit().await)
            })
        })
        .collect();
    let mut same_sku_winners = Vec::new();
    let mut same_ref_winners = Vec::new();
    for task in tasks {
        let (n, sku, reference, result) = task.await.unwrap();
        match (n, result) {
            (0..8, Ok(())) => same_sku_winners.push(reference),
            (0..8, Err(e)) => assert_eq!(e, StoreError::VersionConflict { sku }),
            (8..16, Ok(())) => same_ref_winners.push(sku),
            (8..16, Err(e)) => {
                assert_eq!(e, StoreError::DuplicateBatchReference(reference));
                assert!(
                    store.load(&sku, &[]).await.unwrap().is_none(),
                    "{sku} wrote nothing"
                );
            }
            (_, result) => assert_eq!(result, Ok(()), "unrelated commit {n}"),
        }
    }
    assert_eq!(same_sku_winners.len(), 1);
    assert_eq!(same_ref_winners.len(), 1);
    let product = store.load("SAME-SKU", &[]).await.unwrap().unwrap();
    let batches: Vec<_> = product
        .batches()
        .iter()
        .map(|b| b.reference().to_owned())
        .collect();
    assert_eq!(
        batches, same_sku_winners,
        "only the winner's batch is stored"
    );
    assert_eq!(
        store.sku_of_batch("same-ref").await.unwrap().as_ref(),
        same_ref_winners.first()
    );
    for n in 0..8 {
        let reference = format!("same-sku-b{n}");
        let expected = same_sku_winners
            .contains(&reference)
            .then(|| "SAME-SKU".to_owned());
        assert_eq!(store.sku_of_batch(&reference).await.unwrap(), expected);
    }
    for n in 16..24 {
        assert!(store
            .load(&format!("SKU-{n}"), &[])
            .await
            .unwrap()
            .is_some());
    }
    assert_eq!(store.stats().rejected, 14);
}
