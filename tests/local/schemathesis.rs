//! `docs/openapi.yaml` as a client generated from it would read it: schemathesis (a schema-driven API
//! fuzzer, from the tools venv) runs every check against the real `local` server, and finds no
//! failure but the book's documented 400 for an unknown SKU (`POST /allocate` with a SKU no product
//! has: a schema-valid request the service refuses by design).

use std::process::Command;

use crate::support::local::Workspace;
use crate::support::tools::{repo, tools_python};

/// Examples per operation and phase: enough to reach every rule (about 600 requests, seconds).
const MAX_EXAMPLES: &str = "100";

#[test]
fn schemathesis_finds_no_failure_but_the_documented_unknown_sku() {
    let python = tools_python().unwrap_or_else(|message| panic!("{message}"));
    let schemathesis = python.with_file_name("schemathesis");
    let workspace = Workspace::new();
    let server = workspace.start();
    let output = Command::new(&schemathesis)
        .current_dir(repo())
        .args([
            "run",
            "docs/openapi.yaml",
            "--checks",
            "all",
            "--max-examples",
            MAX_EXAMPLES,
        ])
        .args(["--url", &format!("http://{}", server.addr)])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    // Each failure is a "Test Case ID" block of the FAILURES section.
    let failures = text
        .split("=== FAILURES ===")
        .nth(1)
        .map(|rest| rest.split("=== WARNINGS ===").next().unwrap_or(rest))
        .map(|rest| rest.split("=== SUMMARY ===").next().unwrap_or(rest))
        .unwrap_or_default();
    let blocks: Vec<&str> = failures.split("Test Case ID").skip(1).collect();
    for block in &blocks {
        assert!(
            block.contains("ST202 Schema-valid request rejected")
                && block.contains(r#"{"message":"Invalid sku "#)
                && block.contains("/allocate"),
            "schemathesis found a failure other than the documented unknown SKU:\n{block}\n\n{text}"
        );
    }
    assert!(
        text.contains("generated"),
        "schemathesis did not run:\n{text}"
    );
    assert!(
        output.status.success() || !blocks.is_empty(),
        "schemathesis failed without a failure report:\n{text}"
    );
    println!(
        "schemathesis: {} failure(s), all the documented unknown-SKU 400\n{}",
        blocks.len(),
        text.lines()
            .filter(|l| l.contains("generated") || l.contains("Seed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
