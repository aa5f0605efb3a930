//! The tools venv (moto, cfn-lint, the SAM translator): `scripts/tools-venv.sh` makes it complete the
//! first time (a no-op when up to date), once per test binary; `$ALLOC_VENV` overrides `.venv`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, after `scripts/tools-venv.sh` made sure the venv is complete.
pub fn tools_python() -> Result<&'static Path, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let output = Command::new("bash")
                .arg("scripts/tools-venv.sh")
                .current_dir(repo())
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run bash scripts/tools-venv.sh: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "scripts/tools-venv.sh failed ({}):\n{}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            let venv = std::env::var_os("ALLOC_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo().join(".venv"));
            Ok(venv.join("bin").join("python"))
        })
        .as_deref()
        .map_err(Clone::clone)
}
