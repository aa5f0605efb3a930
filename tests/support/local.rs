//! Helpers of the end-to-end tests of the local server: start the real `local` binary on a free port
//! with its own data directory, wait (bounded) until it listens, speak HTTP, and kill it at the end
//! (also when the test panics).
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the server may take to print its URL.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a test waits for an effect of the event flow (reallocation, email).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A temporary directory for one test: the store's data dir, the mailbox and the server's log.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("allocation-e2e-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    pub fn mailbox(&self) -> PathBuf {
        self.data_dir().join("mailbox.txt")
    }

    pub fn log(&self) -> PathBuf {
        self.path().join("server.log")
    }

    /// Starts the server on this workspace's data dir, with default flags.
    pub fn start(&self) -> Server {
        self.start_with(&[])
    }

    /// Starts the server with extra flags (e.g. `--mailbox`).
    pub fn start_with(&self, args: &[&str]) -> Server {
        Server::start(&self.data_dir(), &self.log(), args)
    }

    /// Starts the server with default flags, its command configured first (e.g. `pre_exec`).
    pub fn start_configured(&self, configure: impl FnOnce(&mut Command)) -> Server {
        Server::start_command(&self.data_dir(), &self.log(), &[], configure)
    }
}

/// The `local` binary.
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_local"));
    for var in [
        "ALLOCATION_ADDR",
        "ALLOCATION_DATA_DIR",
        "ALLOCATION_MAILBOX",
        "ALLOCATION_MAX_ATTEMPTS",
        "ALLOCATION_RETRY_BASE_MS",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command.env("NO_COLOR", "1");
    command
}

/// A running `local` server. Killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    log: PathBuf,
}

impl Server {
    pub fn start(data_dir: &Path, log: &Path, args: &[&str]) -> Server {
        Self::start_command(data_dir, log, args, |_| {})
    }

    pub fn start_command(
        data_dir: &Path,
        log: &Path,
        args: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("server log");
        let mut command = binary();
        command
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        configure(&mut command);
        let mut child = command.spawn().expect("start the local binary");
        let stdout = child.stdout.take().expect("stdout");
        let (lines, first_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    // Keep draining so the server never blocks on a full pipe.
                    continue;
                }
            }
        });
        let mut server = Server {
            child: Some(child),
            url: String::new(),
            addr: String::new(),
            log: log.to_owned(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match first_lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        server.url = url.trim().to_owned();
                        server.addr = server.url.trim_start_matches("http://").to_owned();
                        return server;
                    }
                }
                Err(_) => {
                    let status = server
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    panic!(
                        "the server did not print its URL within {START_TIMEOUT:?} (exit: {status:?}); log:\n{}",
                        server.log_text()
                    );
                }
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// kill -9: no shutdown at all, like a crash or a power cut.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (`TERM`, `INT`) and waits (bounded) for the exit.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill command");
        assert!(sent.success(), "kill -{signal} failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not exit within {timeout:?} of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.addr)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.client().get(path)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.client().post(path, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
            if std::thread::panicking() {
                let log = self.log_text();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("--- last lines of the server log ---");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// A JSON client over ureq (keep-alive), which never treats a status as an error.
pub struct Client {
    agent: ureq::Agent,
    url: String,
}

impl Client {
    pub fn new(addr: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            url: format!("http://{addr}"),
        }
    }

    fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        let mut response = result.expect("HTTP request");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("answer {status} is not JSON ({e}): {text:?}"));
        (status, body)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        Self::answer(self.agent.get(format!("{}{path}", self.url)).call())
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::answer(
            self.agent
                .post(format!("{}{path}", self.url))
                .send_json(body),
        )
    }

    /// A POST with a given content type and raw body.
    pub fn post_raw(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        Self::answer(
            self.agent
                .post(format!("{}{path}", self.url))
                .header("content-type", content_type)
                .send(body),
        )
    }

    pub fn get_with_header(
        &self,
        path: &str,
        name: &str,
        value: &str,
    ) -> ureq::http::Response<ureq::Body> {
        self.agent
            .get(format!("{}{path}", self.url))
            .header(name, value)
            .call()
            .expect("HTTP request")
    }
}

/// A raw HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A keep-alive HTTP/1.1 client over a plain socket, sending exactly the bytes asked for (any method,
/// path, header or body), for the hardening tests. Reconnects when the server closed the connection.
pub struct RawClient {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
}

impl RawClient {
    pub fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            stream: None,
        }
    }

    fn connect(&mut self) -> &mut BufReader<TcpStream> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr).expect("connect");
            stream.set_nodelay(true).ok();
            stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
            self.stream = Some(BufReader::new(stream));
        }
        self.stream.as_mut().expect("connected")
    }

    /// Sends one request; `headers` are sent as given (plus `host` and `content-length`).
    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let mut request =
            format!("{method} {target} HTTP/1.1\r\nhost: {}\r\n", self.addr).into_bytes();
        for (name, value) in headers {
            request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        request.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        // A kept-alive connection the server has closed meanwhile fails on first use: retry once on a
        // fresh one (nothing was processed then).
        for attempt in 0..2 {
            let stream = self.connect();
            let sent = stream
                .get_mut()
                .write_all(&request)
                .and_then(|()| stream.get_mut().flush());
            let response = sent.and_then(|()| read_response(stream));
            match response {
                Ok(response) => {
                    if response
                        .header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                    {
                        self.stream = None;
                    }
                    return response;
                }
                Err(error) => {
                    self.stream = None;
                    if attempt == 1 {
                        panic!("raw request {method} {target} failed: {error}");
                    }
                }
            }
        }
        unreachable!()
    }
}

fn read_response(stream: &mut BufReader<TcpStream>) -> std::io::Result<RawResponse> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if stream.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("status line"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        stream.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').ok_or_else(|| invalid("header"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| invalid("content-length"))?;
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A unique name, so tests never share SKUs or references by accident.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", fastrand::u32(..))
}
