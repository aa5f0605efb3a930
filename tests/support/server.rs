//! A test server process (moto, DynamoDB Local) on a free 127.0.0.1 port, stopped when the test
//! process exits, even after a panic or a kill: it runs behind a tiny shell watchdog whose stdin is a
//! pipe held by this process; when the process ends, for any reason, the pipe closes and the
//! watchdog kills the server. Its output goes to `target/tmp/<server>-<test binary>-<name>.log`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Spawn attempts (a free port can be taken between probing and binding).
const ATTEMPTS: usize = 3;

/// Stops the server when this process's copy of the pipe closes (at exit, whatever the cause), and
/// exits when the server does. `$0` is the server program, `$@` its arguments. SIGKILL: neither
/// server keeps anything worth a clean shutdown.
const WATCHDOG: &str = r#"
exec 3<&0
"$0" "$@" </dev/null &
server=$!
{ cat <&3 >/dev/null; kill -KILL "$server" 2>/dev/null; } &
wait "$server"
"#;

/// A running server.
pub struct Server {
    pub port: u16,
    pub log: PathBuf,
    /// The watchdog and the write end of its stdin: kept open for the life of the process.
    _watchdog: Mutex<(Child, ChildStdin)>,
}

/// What to run and how to tell it is ready.
pub struct Spec<'a> {
    /// `moto`, `dynamodb-local`: names the log.
    pub server: &'a str,
    pub name: &'a str,
    pub program: &'a Path,
    /// The arguments, given the port.
    pub args: &'a dyn Fn(u16) -> Vec<String>,
    /// Whether the server answers at this address.
    pub answers: &'a dyn Fn(SocketAddr) -> bool,
    pub ready_timeout: Duration,
}

impl Server {
    /// Starts the server (a few attempts, each on a new free port) and waits until it answers.
    pub fn start(spec: &Spec<'_>) -> Result<Server, String> {
        let log = log_path(spec.server, spec.name)?;
        let mut failures = Vec::new();
        for _ in 0..ATTEMPTS {
            match spawn(spec, &log) {
                Ok(server) => return Ok(server),
                Err(failure) => failures.push(failure),
            }
        }
        Err(format!(
            "{} did not start ({ATTEMPTS} attempts):\n{}",
            spec.server,
            failures.join("\n")
        ))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

/// A name unique to this process and call.
pub use super::contract::unique as unique_name;

/// The HTTP status a server at this address answers a `GET path` with, if it answers at all.
pub fn http_status(address: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    if !head.starts_with(b"HTTP/1.") {
        return None;
    }
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// `target/tmp/<server>-<test binary>-<name>.log`, truncated.
fn log_path(server: &str, name: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tests".to_owned());
    Ok(dir.join(format!("{server}-{binary}-{name}.log")))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

fn spawn(spec: &Spec<'_>, log: &Path) -> Result<Server, String> {
    let port = free_port()?;
    let output =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let errors = output
        .try_clone()
        .map_err(|e| format!("cannot share {}: {e}", log.display()))?;
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(spec.program)
        .args((spec.args)(port))
        .stdin(Stdio::piped())
        .stdout(output)
        .stderr(errors)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", spec.program.display()))?;
    let Some(stdin) = child.stdin.take() else {
        let _ = child.kill();
        return Err("the watchdog has no stdin pipe".to_owned());
    };
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    loop {
        if (spec.answers)(address) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{} on port {port} exited ({status}); log {}:\n{}",
                spec.server,
                log.display(),
                log_tail(log)
            ));
        }
        if started.elapsed() > spec.ready_timeout {
            drop(stdin); // stops the server
            let _ = child.wait();
            return Err(format!(
                "{} on port {port} did not answer within {:?}; log {}:\n{}",
                spec.server,
                spec.ready_timeout,
                log.display(),
                log_tail(log)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Server {
        port,
        log: log.to_owned(),
        _watchdog: Mutex::new((child, stdin)),
    })
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
