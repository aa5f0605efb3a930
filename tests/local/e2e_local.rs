//! End to end over HTTP against the real `local` binary: the book's API tests, the
//! event flow (reallocation, out-of-stock email, dead letters), durability across kill -9 and restart,
//! graceful shutdown, request ids and the command line.

use std::time::Duration;

use crate::support::local::{binary, eventually, unique, Workspace, EVENT_TIMEOUT};
use serde_json::{json, Value};

fn add_batch(
    server: &crate::support::local::Server,
    reference: &str,
    sku: &str,
    qty: u32,
    eta: Value,
) {
    let (status, body) = server.post(
        "/add_batch",
        &json!({"ref": reference, "sku": sku, "qty": qty, "eta": eta}),
    );
    assert_eq!(status, 201, "add_batch {reference}: {body}");
}

fn allocate(
    server: &crate::support::local::Server,
    orderid: &str,
    sku: &str,
    qty: u32,
) -> (u16, Value) {
    server.post(
        "/allocate",
        &json!({"orderid": orderid, "sku": sku, "qty": qty}),
    )
}

fn message_of(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

fn mailbox_text(workspace: &Workspace) -> String {
    std::fs::read_to_string(workspace.mailbox()).unwrap_or_default()
}

#[test]
fn prints_its_url_and_earliest_batch_wins() {
    let workspace = Workspace::new();
    let server = workspace.start();
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let (sku, other) = (unique("SMALL-TABLE"), unique("OTHER"));
    let (early, later, other_batch) = (unique("b-early"), unique("b-later"), unique("b-other"));
    add_batch(&server, &later, &sku, 100, json!("2031-01-02"));
    add_batch(&server, &early, &sku, 100, json!("2031-01-01"));
    add_batch(&server, &other_batch, &other, 100, Value::Null);
    let orderid = unique("order");
    let (status, body) = allocate(&server, &orderid, &sku, 3);
    assert_eq!((status, body), (201, json!({"batchref": early})));
    let (status, body) = server.get(&format!("/allocations/{orderid}"));
    assert_eq!(
        (status, body),
        (200, json!([{"sku": sku, "batchref": early}]))
    );
}

#[test]
fn in_stock_batches_are_preferred_to_shipments() {
    let workspace = Workspace::new();
    let server = workspace.start();
    let sku = unique("CLOCK");
    let (in_stock, shipment) = (unique("in-stock"), unique("shipment"));
    add_batch(&server, &shipment, &sku, 100, json!("2000-01-01"));
    add_batch(&server, &in_stock, &sku, 100, Value::Null);
    let (status, body) = allocate(&server, &unique("order"), &sku, 10);
    assert_eq!((status, body), (201, json!({"batchref": in_stock})));
}

#[test]
fn unknown_sku_is_a_400_with_the_books_message() {
    let workspace = Workspace::new();
    let server = workspace.start();
    let sku = unique("NOPE");
    let (status, body) = allocate(&server, &unique("order"), &sku, 20);
    assert_eq!(
        (status, body),
        (400, json!({"message": format!("Invalid sku {sku}")}))
    );
    let (status, body) = server.get("/allocations/never-allocated");
    assert_eq!((status, body), (404, json!({"message": "not found"})));
}

#[test]
fn out_of_stock_is_a_409_and_an_email_in_the_mailbox() {
    let workspace = Workspace::new();
    let server = workspace.start();
    let sku = unique("LAMP");
    add_batch(&server, &unique("batch"), &sku, 5, Value::Null);
    let response = crate::support::local::RawClient::new(&server.addr).send(
        "POST",
        "/allocate",
        &[
            ("content-type", "application/json"),
            ("x-request-id", "req-out-of-stock-1"),
        ],
        json!({"orderid": unique("order"), "sku": sku, "qty": 10})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(response.status, 409);
    assert_eq!(
        response.json(),
        Some(json!({"message": format!("Out of stock for sku {sku}")}))
    );
    assert_eq!(response.header("x-request-id"), Some("req-out-of-stock-1"));
    let subject = format!("Subject: Out of stock for SKU {sku}\n");
    let text = eventually("the out-of-stock email", EVENT_TIMEOUT, || {
        let text = mailbox_text(&workspace);
        text.contains(&subject).then_some(text)
    });
    assert!(
        text.contains(&format!("Out of stock for SKU {sku} since 20")),
        "{text}"
    );
    assert!(text.contains("Order line turned away: order "), "{text}");
    assert!(text.contains(&format!("Event id: {sku}:")), "{text}");
    assert!(
        text.contains("Correlation-Id: req-out-of-stock-1\n"),
        "the request id is the correlation id: {text}"
    );
    eventually("the email's log line", EVENT_TIMEOUT, || {
        server
            .log_text()
            .contains("email: Out of stock for SKU")
            .then_some(())
    });
}

#[test]
fn changing_a_batch_quantity_reallocates_through_the_queue() {
    let workspace = Workspace::new();
    let server = workspace.start();
    let sku = unique("INDIFFERENT-TABLE");
    let (in_stock, shipment) = (unique("in-stock"), unique("shipment"));
    add_batch(&server, &in_stock, &sku, 10, Value::Null);
    add_batch(&server, &shipment, &sku, 50, json!("2031-01-01"));
    let (order1, order2) = (unique("order1"), unique("order2"));
    assert_eq!(
        allocate(&server, &order1, &sku, 10).1,
        json!({"batchref": in_stock})
    );
    assert_eq!(
        allocate(&server, &order2, &sku, 10).1,
        json!({"batchref": shipment})
    );
    let (status, body) = server.post(
        "/change_batch_quantity",
        &json!({"ref": in_stock, "qty": 5}),
    );
    assert_eq!((status, body), (200, json!({"message": "OK"})));
    let expected = json!([{"sku": sku, "batchref": shipment}]);
    eventually("the reallocation of order1", EVENT_TIMEOUT, || {
        let (status, body) = server.get(&format!("/allocations/{order1}"));
        (status == 200 && body == expected).then_some(())
    });
    assert_eq!(server.get(&format!("/allocations/{order2}")).1, expected);
    eventually("the delivered event's log line", EVENT_TIMEOUT, || {
        let log = server.log_text();
        log.contains("event delivered consumer=\"reallocation-queue\"")
            .then_some(())
    });
    let (status, body) = server.get("/admin/dead-letters");
    assert_eq!((status, body), (200, json!([])));
}

#[test]
fn a_line_no_batch_can_take_waits_and_is_allocated_when_stock_arrives() {
    let workspace = Workspace::new();
    let server = workspace.start();
    let sku = unique("BACKORDER");
    let (first, second) = (unique("first"), unique("second"));
    add_batch(&server, &first, &sku, 10, Value::Null);
    let order = unique("order");
    assert_eq!(allocate(&server, &order, &sku, 8).0, 201);
    let (status, _) = server.post("/change_batch_quantity", &json!({"ref": first, "qty": 5}));
    assert_eq!(status, 200);
    let waiting = json!([{"sku": sku, "batchref": null}]);
    eventually(
        "the line waits (its reallocation found no stock)",
        EVENT_TIMEOUT,
        || {
            let text = mailbox_text(&workspace);
            text.contains(&format!("Subject: Out of stock for SKU {sku}\n"))
                .then_some(())
        },
    );
    assert_eq!(server.get(&format!("/allocations/{order}")), (200, waiting));
    // A client's allocation without stock is refused and leaves nothing; no second email.
    let refused = unique("refused");
    assert_eq!(allocate(&server, &refused, &sku, 8).0, 409);
    assert_eq!(server.get(&format!("/allocations/{refused}")).0, 404);

    add_batch(&server, &second, &sku, 10, Value::Null);
    let expected = json!([{"sku": sku, "batchref": second}]);
    eventually("the waiting line is allocated", EVENT_TIMEOUT, || {
        let (status, body) = server.get(&format!("/allocations/{order}"));
        (status == 200 && body == expected).then_some(())
    });
    let emails = mailbox_text(&workspace)
        .matches(&format!("Subject: Out of stock for SKU {sku}\n"))
        .count();
    assert_eq!(emails, 1, "one email for the stock-out episode");
}

#[test]
fn reallocating_the_same_line_is_idempotent() {
    let workspace = Workspace::new();
    let server = workspace.start();
    let sku = unique("RUG");
    let batch = unique("batch");
    add_batch(&server, &batch, &sku, 10, Value::Null);
    let orderid = unique("order");
    for _ in 0..3 {
        assert_eq!(
            allocate(&server, &orderid, &sku, 6),
            (201, json!({"batchref": batch}))
        );
    }
    // Only one line of 6 is allocated: 4 remain.
    assert_eq!(
        allocate(&server, &unique("other"), &sku, 4),
        (201, json!({"batchref": batch}))
    );
    assert_eq!(allocate(&server, &unique("third"), &sku, 1).0, 409);
}

#[test]
fn data_survives_kill_9_and_restart() {
    let workspace = Workspace::new();
    let sku = unique("DESK");
    let (batch, orderid) = (unique("batch"), unique("order"));
    {
        let mut server = workspace.start();
        add_batch(&server, &batch, &sku, 10, Value::Null);
        assert_eq!(allocate(&server, &orderid, &sku, 7).0, 201);
        server.kill();
    }
    let server = workspace.start();
    let (status, body) = server.get(&format!("/allocations/{orderid}"));
    assert_eq!(
        (status, body),
        (200, json!([{"sku": sku, "batchref": batch}]))
    );
    // The allocation's quantity survived too: 3 left, not 10.
    assert_eq!(allocate(&server, &unique("o"), &sku, 4).0, 409);
    assert_eq!(allocate(&server, &unique("o"), &sku, 3).0, 201);
    let (status, _) = server.post("/add_batch", &json!({"ref": batch, "sku": sku, "qty": 1}));
    assert_eq!(status, 409, "the batch reference survived");
}

#[test]
fn an_event_pending_at_a_crash_is_delivered_after_restart() {
    let workspace = Workspace::new();
    // The mailbox path is a directory: every delivery of an email fails, and the long backoff keeps the
    // event pending in the outbox (not dead-lettered) until the crash.
    let blocked = workspace.path().join("not-a-file");
    std::fs::create_dir_all(&blocked).unwrap();
    let sku = unique("CHAIR");
    {
        let mut server = workspace.start_with(&[
            "--mailbox",
            blocked.to_str().unwrap(),
            "--retry-base-ms",
            "60000",
        ]);
        add_batch(&server, &unique("batch"), &sku, 1, Value::Null);
        assert_eq!(allocate(&server, &unique("order"), &sku, 2).0, 409);
        eventually("a failed email delivery", EVENT_TIMEOUT, || {
            server
                .log_text()
                .contains("delivery failed, will retry")
                .then_some(())
        });
        server.kill();
    }
    assert!(!mailbox_text(&workspace).contains(&sku));
    let server = workspace.start();
    let subject = format!("Subject: Out of stock for SKU {sku}\n");
    eventually("the email after restart", EVENT_TIMEOUT, || {
        mailbox_text(&workspace).contains(&subject).then_some(())
    });
    assert_eq!(server.get("/admin/dead-letters").1, json!([]));
}

#[test]
fn an_event_failing_every_attempt_goes_to_the_dead_letters() {
    let workspace = Workspace::new();
    let blocked = workspace.path().join("not-a-file");
    std::fs::create_dir_all(&blocked).unwrap();
    let sku = unique("SOFA");
    let mut server = workspace.start_with(&[
        "--mailbox",
        blocked.to_str().unwrap(),
        "--max-attempts",
        "3",
        "--retry-base-ms",
        "10",
    ]);
    add_batch(&server, &unique("batch"), &sku, 1, Value::Null);
    assert_eq!(allocate(&server, &unique("order"), &sku, 2).0, 409);
    let letters = eventually("the dead letter", EVENT_TIMEOUT, || {
        let (status, body) = server.get("/admin/dead-letters");
        assert_eq!(status, 200);
        (body.as_array().is_some_and(|a| !a.is_empty())).then_some(body)
    });
    let letter = &letters[0];
    assert_eq!(
        letter["type"],
        json!(null),
        "the envelope is nested: {letter}"
    );
    assert_eq!(letter["envelope"]["type"], "OutOfStock");
    assert_eq!(letter["envelope"]["sku"], sku.as_str());
    assert_eq!(letter["attempts"], 3);
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .starts_with("mailbox: cannot read mailbox"),
        "{letter}"
    );
    let (status, body) = server
        .client()
        .post_raw("/admin/dead-letters", "application/json", b"{}");
    assert_eq!(status, 405, "{body}");

    // The command line lists them too, once the server has stopped (it holds the store).
    let status = server.signal_and_wait("TERM", Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    // And checks the outbox: its events (the batch's none, the refusal's OutOfStock), all delivered
    // (the dead letter counts as taken).
    let check = binary()
        .args(["check", "--data-dir"])
        .arg(workspace.data_dir())
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let counts: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(counts["pending"], 0, "{counts}");
    assert_eq!(counts["events"], counts["delivered"], "{counts}");
    assert!(counts["events"].as_u64().unwrap() >= 1, "{counts}");
    let nothing = binary()
        .args(["check", "--data-dir"])
        .arg(workspace.path().join("no-store-here"))
        .output()
        .unwrap();
    assert!(!nothing.status.success());
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("no store in"));
    let output = binary()
        .args(["dead-letters", "--data-dir"])
        .arg(workspace.data_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines, letters.as_array().unwrap().clone());
}

/// Sets the soft limit on the size of the files a process writes (`None`: no limit). Past it, a write
/// fails with `EFBIG` (SIGXFSZ being ignored): to the process, the disk is full.
fn set_file_size_limit(pid: u32, limit: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: limit.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: prlimit only reads `limit`; the old limit is not asked for (null).
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn a_full_disk_answers_writes_503_keeps_serving_reads_and_recovers_without_a_restart() {
    use std::os::unix::process::CommandExt;
    let workspace = Workspace::new();
    let server = workspace.start_configured(|command| {
        // SAFETY: between fork and exec the closure only calls signal(2), which is
        // async-signal-safe; an ignored disposition survives exec.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
    });
    let sku = unique("FULL-DISK");
    add_batch(&server, &unique("batch"), &sku, 1_000_000, Value::Null);
    let first = unique("order");
    assert_eq!(allocate(&server, &first, &sku, 1).0, 201);

    // The disk fills up: no file of the server may grow past the database's size now.
    let database = workspace
        .data_dir()
        .join(allocation::adapters::embedded::DATABASE_FILE);
    let size = std::fs::metadata(&database).unwrap().len();
    set_file_size_limit(server.pid(), Some(size));
    let mut refused = None;
    for n in 0..50_000 {
        let (status, body) = allocate(&server, &format!("{first}-{n}"), &sku, 1);
        if status == 503 {
            refused = Some(body);
            break;
        }
        assert_eq!(status, 201, "{body}");
    }
    let body = refused.expect("a write fails once the database cannot grow");
    assert!(message_of(&body).contains("try again"), "{body}");

    // Reads go on; a write is answered 503 (or, if the repaired file has room left, 201): never
    // a 500, and no restart.
    eventually("reads are answered", EVENT_TIMEOUT, || {
        (server.get(&format!("/allocations/{first}")).0 == 200).then_some(())
    });
    let during = allocate(&server, &unique("during"), &sku, 1).0;
    assert!(during == 503 || during == 201, "{during}");

    // Space is back: writes succeed again, and what was written before is intact.
    set_file_size_limit(server.pid(), None);
    eventually("writes succeed again", EVENT_TIMEOUT, || {
        (allocate(&server, &unique("after"), &sku, 1).0 == 201).then_some(())
    });
    assert_eq!(server.get(&format!("/allocations/{first}")).0, 200);
    let log = server.log_text();
    assert!(log.contains("storage recovered; writes resume"), "{log}");
}

#[test]
fn sigterm_and_sigint_shut_down_gracefully_and_flush_the_relay() {
    let workspace = Workspace::new();
    for signal in ["TERM", "INT"] {
        let mut server = workspace.start();
        add_batch(&server, &unique("batch"), &unique("SKU"), 1, Value::Null);
        let status = server.signal_and_wait(signal, Duration::from_secs(30));
        assert!(status.success(), "exit after SIG{signal}: {status:?}");
    }
    let log = std::fs::read_to_string(workspace.log()).unwrap();
    assert_eq!(log.matches("outbox relay stopped").count(), 2, "{log}");
    assert!(log.contains("received SIGTERM") && log.contains("received SIGINT"));
}

#[test]
fn every_request_is_logged_with_its_request_id() {
    let workspace = Workspace::new();
    let server = workspace.start();
    let response = server
        .client()
        .get_with_header("/allocations/x", "x-request-id", "trace-me-42");
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let generated = server
        .client()
        .get_with_header("/allocations/x", "x-request-id", "");
    let generated = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 32);
    let log = eventually("the request log line", EVENT_TIMEOUT, || {
        let log = server.log_text();
        log.contains(&generated).then_some(log)
    });
    let line = log
        .lines()
        .find(|l| l.contains("request_id=trace-me-42"))
        .expect("logged");
    for part in [
        "method=\"GET\"",
        "path=\"/allocations/x\"",
        "status=404",
        "latency_us=",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
}

#[test]
fn help_explains_the_flags_and_their_environment_variables() {
    let output = binary().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for word in [
        "--addr",
        "ALLOCATION_ADDR",
        "127.0.0.1:5005",
        "--data-dir",
        "ALLOCATION_DATA_DIR",
        "--mailbox",
        "ALLOCATION_MAILBOX",
        "dead-letters",
    ] {
        assert!(help.contains(word), "{word} in --help:\n{help}");
    }
}

#[test]
fn flags_can_come_from_the_environment() {
    let workspace = Workspace::new();
    let mailbox = workspace.path().join("env-mailbox.txt");
    let mut child = binary()
        .env("ALLOCATION_ADDR", "127.0.0.1:0")
        .env("ALLOCATION_DATA_DIR", workspace.data_dir())
        .env("ALLOCATION_MAILBOX", &mailbox)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let read = std::thread::spawn(move || {
        std::io::BufRead::read_line(&mut stdout, &mut line).map(|_| line)
    });
    let deadline = std::time::Instant::now() + crate::support::local::START_TIMEOUT;
    while !read.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let finished = read.is_finished();
    let _ = child.kill();
    let _ = child.wait();
    assert!(finished, "the server did not start");
    let line = read.join().unwrap().unwrap();
    assert!(line.starts_with("listening on http://127.0.0.1:"), "{line}");
    assert!(
        workspace.data_dir().join("allocation.redb").exists(),
        "the data dir came from the environment"
    );
}
