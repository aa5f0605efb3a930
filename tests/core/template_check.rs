//! The SAM template check: template.yaml expands (samtranslator) and lints clean (cfn-lint with its
//! serverless rules), and the check catches a broken reference.
//! Also the Python tests of `scripts/`: each of the check's project rules rejects a template broken
//! against it, and the smoke script signs its requests and runs its flow against a local stand-in.

// Needs python3 (>= 3.9) and PyPI: `scripts/tools-venv.sh` installs the pinned tools into
// `$ALLOC_VENV` (default `.venv`) the first time, then returns at once.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::tools::repo;

/// The tools venv's python, after `scripts/tools-venv.sh` made sure the venv is complete.
/// Runs the script once per test binary (the script itself serialises concurrent binaries).
fn tools_python() -> &'static Path {
    crate::support::tools::tools_python().unwrap_or_else(|message| panic!("{message}"))
}

/// Runs `scripts/check_template.py TEMPLATE`; returns its exit status and stdout + stderr.
fn check_template(template: &Path) -> (Output, String) {
    let output = Command::new(tools_python())
        .arg("scripts/check_template.py")
        .arg(template)
        .current_dir(repo())
        .output()
        .expect("run scripts/check_template.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

/// Runs the Python unittest file `scripts/<file>` with the tools venv's python; returns its exit
/// status and stdout + stderr.
fn python_unittests(file: &str) -> (Output, String) {
    let output = Command::new(tools_python())
        .arg(Path::new("scripts").join(file))
        .arg("-v")
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{file}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

/// A file removed when dropped, so a failed assertion leaves no litter.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn the_sam_template_expands_and_lints_clean() {
    let (output, text) = check_template(&repo().join("template.yaml"));
    assert!(
        output.status.success(),
        "template check failed ({}):\n{text}",
        output.status
    );
    assert!(
        text.contains("0 error(s)"),
        "unexpected checker output:\n{text}"
    );
}

#[test]
fn the_template_check_rejects_a_broken_reference() {
    let original = fs::read_to_string(repo().join("template.yaml")).expect("read template.yaml");

    // Point the functions' TABLE_NAME at a resource that does not exist. A plain `cfn-lint
    // template.yaml` misses this (it sits inside AWS::Serverless::Function); the expansion
    // must not.
    let mut replaced = 0;
    let broken: String = original
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if let Some(target) = trimmed.strip_prefix("TABLE_NAME: !Ref ") {
                assert_ne!(target.trim(), "NoSuchTable", "template already broken");
                replaced += 1;
                let indent = &line[..line.len() - trimmed.len()];
                format!("{indent}TABLE_NAME: !Ref NoSuchTable\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert!(
        replaced > 0,
        "template.yaml has no `TABLE_NAME: !Ref <Table>` line to break"
    );

    let path = env::temp_dir().join(format!(
        "allocation-template-broken-ref-{}.yaml",
        std::process::id()
    ));
    fs::write(&path, broken).expect("write the broken template");
    let file = TempFile(path);

    let (output, text) = check_template(&file.0);
    assert!(
        !output.status.success(),
        "the check accepted a template with `TABLE_NAME: !Ref NoSuchTable`:\n{text}"
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected lint errors (exit 1), got {}:\n{text}",
        output.status
    );
    assert!(
        text.contains("NoSuchTable"),
        "the check failed without naming NoSuchTable:\n{text}"
    );
}

#[test]
fn each_template_rule_rejects_a_template_broken_against_it() {
    // Authorizers, least privilege, visibility timeouts, dead-letter and relay alarms, topic
    // encryption: scripts/test_check_template.py breaks a copy of template.yaml once per rule.
    let (output, text) = python_unittests("test_check_template.py");
    assert!(
        output.status.success(),
        "scripts/test_check_template.py failed ({}):\n{text}",
        output.status
    );
}

#[test]
fn the_smoke_script_signs_its_requests_and_runs_the_flow_offline() {
    let (output, text) = python_unittests("test_smoke.py");
    assert!(
        output.status.success(),
        "scripts/test_smoke.py failed ({}):\n{text}",
        output.status
    );
}
