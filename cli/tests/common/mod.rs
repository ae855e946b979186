//! Test harness: real servers (hubd, or etcd as the reference) on loopback
//! ports, and a runner for differential scripts that replays the same command
//! sequence with etcdctl and with hubctl and compares what they print.
//!
//! Script format (`tests/scripts/*.txt`), one step per line:
//!
//! ```text
//! # comment
//! put foo bar                       a command, run as `<tool> --endpoints <server> put foo bar`
//! ETCDCTL_WRITE_OUT=json get foo    leading VAR=value words are environment
//! txn <<< mod("a") > "0"\n\n\n\n    stdin after `<<< ` (\n, \t, \\ escapes)
//! & watch foo --prefix              start in the background (stdin stays open)
//! stop                              end background commands, compare their output
//! sleep 300                         milliseconds
//! [etcd] endpoint status --cluster  run on etcd only (a gap of hubd's, named in a comment)
//! member add ... | unordered          compare output lines and comma-separated
//!                                    items as sets (orders that follow random IDs)
//! ```
//!
//! A step that names `--endpoints` itself gets no endpoint added. `$LEASE` and
//! `$MEMBER` stand for the lease / member most recently reported by
//! `lease grant` / `member add`; those IDs, and timings, are masked in outputs.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use hub_testkit::free_port;

pub fn hubctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hubctl"))
}

/// hubd of the profile these tests are built in (`target/<profile>/hubd`, which
/// `cargo test --workspace` builds for the server's tests).
pub fn hubd_bin() -> PathBuf {
    // A test binary lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>").join("hubd");
    assert!(path.exists(), "{} is missing: run `cargo build -p hub-server` first", path.display());
    path
}

/// etcd 3.4.23 from Debian, the reference server.
pub fn etcd_bin() -> PathBuf {
    let path = PathBuf::from("/usr/bin/etcd");
    assert!(path.exists(), "/usr/bin/etcd is missing: apt-get install etcd-server etcd-client");
    path
}

/// One single-member server in a fresh temporary data directory.
pub struct Server {
    child: Child,
    pub client_port: u16,
    _data: tempfile::TempDir,
}

impl Server {
    /// Starts `bin` on the given ports and waits until it serves clients.
    /// Same binary and ports give the same cluster and member IDs.
    pub fn start(bin: &Path, client_port: u16, peer_port: u16) -> Server {
        Self::start_with(bin, client_port, peer_port, "http", &[])
    }

    /// The same with the client URL's scheme and extra flags (e.g. TLS files).
    pub fn start_with(bin: &Path, client_port: u16, peer_port: u16, scheme: &str, extra: &[String]) -> Server {
        let data = tempfile::tempdir().expect("tempdir");
        let client = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut args: Vec<String> = vec!["--data-dir".into(), data.path().join("data").to_string_lossy().into_owned()];
        args.extend(["--listen-client-urls".into(), client.clone(), "--advertise-client-urls".into(), client]);
        args.extend(["--listen-peer-urls".into(), peer.clone(), "--initial-advertise-peer-urls".into(), peer.clone()]);
        args.extend(["--initial-cluster".into(), format!("default={peer}")]);
        args.extend_from_slice(extra);
        Self::start_args(bin, client_port, &args, data)
    }

    /// Starts `bin` with exactly `args` (which name the data directory, e.g.
    /// one inside `data`) and waits until it serves clients on `client_port`.
    pub fn start_args(bin: &Path, client_port: u16, args: &[String], data: tempfile::TempDir) -> Server {
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let (tx, rx) = mpsc::channel();
        let pipes: Vec<Box<dyn Read + Send>> =
            vec![Box::new(child.stdout.take().expect("stdout")), Box::new(child.stderr.take().expect("stderr"))];
        for pipe in pipes {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if line.contains("ready to serve client requests") {
                        let _ = tx.send(());
                    }
                    if std::env::var_os("HUB_TEST_LOG").is_some() {
                        eprintln!("[server] {line}");
                    }
                }
            });
        }
        rx.recv_timeout(Duration::from_secs(20)).expect("server did not become ready");
        Server { child, client_port, _data: data }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which server a script runs against; `[etcd] ` steps run on etcd only.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ServerKind {
    Etcd,
    Hubd,
}

/// The client under test: etcdctl (reference) or hubctl.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tool {
    Etcdctl,
    Hubctl,
}

impl Tool {
    /// The tool with `ETCDCTL_API=3` and no other `ETCDCTL_*`/`HUBCTL_*` variables.
    pub fn command(self) -> Command {
        let mut cmd = match self {
            Tool::Etcdctl => Command::new("etcdctl"),
            Tool::Hubctl => Command::new(hubctl_bin()),
        };
        cmd.env("ETCDCTL_API", "3");
        for (k, _) in std::env::vars() {
            if k.starts_with("ETCDCTL_") && k != "ETCDCTL_API" || k.starts_with("HUBCTL_") {
                cmd.env_remove(k);
            }
        }
        cmd
    }
}

/// What one step printed, masked and reduced to what must match.
#[derive(Debug, PartialEq)]
pub struct Observed {
    pub stdout: String,
    /// The `Error: ...` lines of stderr (etcdctl's client also logs JSON warnings there).
    pub errors: Vec<String>,
    pub exit: Option<i32>,
}

struct Step {
    line: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
    stdin: Option<String>,
    background: bool,
    unordered: bool,
}

enum Line {
    Run(Step),
    Stop,
    Sleep(u64),
}

fn parse_script(text: &str, server: ServerKind) -> Vec<Line> {
    let mut lines = Vec::new();
    for raw in text.lines() {
        let mut line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("[etcd] ") {
            if server != ServerKind::Etcd {
                continue;
            }
            line = rest;
        }
        if line == "stop" {
            lines.push(Line::Stop);
            continue;
        }
        if let Some(ms) = line.strip_prefix("sleep ") {
            lines.push(Line::Sleep(ms.trim().parse().expect("sleep <ms>")));
            continue;
        }
        let (background, rest) = match line.strip_prefix("& ") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let (rest, unordered) = match rest.strip_suffix(" | unordered") {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let (command, stdin) = match rest.split_once(" <<< ") {
            Some((c, s)) => (c, Some(unescape(s))),
            None => (rest, None),
        };
        let mut env = Vec::new();
        let mut args = Vec::new();
        for word in split_words(command) {
            match word.split_once('=') {
                Some((k, v)) if args.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                    env.push((k.to_string(), v.to_string()))
                }
                _ => args.push(word),
            }
        }
        lines.push(Line::Run(Step { line: line.to_string(), env, args, stdin, background, unordered }));
    }
    lines
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Shell-like words: spaces separate, '...' and "..." group.
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, ' ') => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// Runs a script with one tool against `endpoint`; one [`Observed`] per step
/// (background commands report at `stop`).
pub fn run_script(tool: Tool, server: ServerKind, endpoint: &str, script: &str) -> Vec<(String, Observed)> {
    let mut results = Vec::new();
    let mut masks: Vec<(String, &'static str)> = Vec::new();
    let mut vars: Vec<(&'static str, String)> = Vec::new();
    let mut background: Vec<(String, Child)> = Vec::new();
    for line in parse_script(script, server) {
        match line {
            Line::Sleep(ms) => std::thread::sleep(Duration::from_millis(ms)),
            Line::Stop => {
                for (name, child) in background.drain(..) {
                    let observed = stop(child, &masks);
                    results.push((format!("{name} (background)"), observed));
                }
            }
            Line::Run(step) => {
                let mut cmd = tool.command();
                if !step.args.iter().any(|a| a.starts_with("--endpoints")) {
                    cmd.args(["--endpoints", endpoint]);
                }
                for arg in &step.args {
                    let mut arg = arg.clone();
                    for (name, value) in &vars {
                        arg = arg.replace(name, value);
                    }
                    cmd.arg(arg);
                }
                cmd.envs(step.env.iter().map(|(k, v)| (k, v)));
                cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
                let mut child = cmd.spawn().expect("spawn client");
                if let (Some(input), Some(stdin)) = (&step.stdin, child.stdin.as_mut()) {
                    let _ = stdin.write_all(input.as_bytes());
                }
                if step.background {
                    // Give the command time to connect and register before the next step.
                    std::thread::sleep(Duration::from_millis(700));
                    background.push((step.line.clone(), child));
                    continue;
                }
                drop(child.stdin.take());
                let output = child.wait_with_output().expect("client output");
                let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
                learn_ids(&stdout, &mut masks, &mut vars);
                let mut observed = observe(&output.stdout, &output.stderr, output.status.code(), &masks);
                if step.unordered {
                    let mut pieces: Vec<&str> = observed.stdout.split(['\n', ',', '"']).collect();
                    pieces.sort_unstable();
                    observed.stdout = pieces.join("\n");
                }
                results.push((step.line, observed));
            }
        }
    }
    for (name, child) in background {
        results.push((format!("{name} (background, not stopped)"), stop(child, &masks)));
    }
    results
}

/// Closes stdin, waits a little for the command to end by itself, else kills it.
fn stop(mut child: Child, masks: &[(String, &'static str)]) -> Observed {
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut exit = None;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            exit = Some(status.code());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if exit.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("background output");
    observe(&output.stdout, &output.stderr, exit.flatten(), masks)
}

/// Remembers lease and member IDs a step reported, to mask and substitute them.
fn learn_ids(stdout: &str, masks: &mut Vec<(String, &'static str)>, vars: &mut Vec<(&'static str, String)>) {
    let mut learn = |hex: &str, var: &'static str, mask: &'static str| {
        if let Ok(n) = u64::from_str_radix(hex, 16) {
            // Go's %16x pads short IDs with spaces; mask the padding too.
            masks.push((format!("{n:>16x}"), mask));
            masks.push((hex.to_string(), mask));
            masks.push((format!("{n:x}"), mask));
            masks.push((n.to_string(), mask));
            vars.retain(|(v, _)| *v != var);
            vars.push((var, hex.to_string()));
        }
    };
    let mut lines = stdout.lines().peekable();
    while let Some(line) = lines.next() {
        // -w fields: "ID" : <decimal> followed by "TTL" : ...
        if let Some(id) = line.strip_prefix("\"ID\" : ") {
            if lines.peek().is_some_and(|next| next.starts_with("\"TTL\" : ")) {
                if let Ok(n) = id.parse::<u64>() {
                    learn(&format!("{n:016x}"), "$LEASE", "<LEASE>");
                }
            }
        }
        // -w json: "ID":<decimal>,"TTL":...
        if let Some((_, rest)) = line.split_once("\"ID\":") {
            if let Some((id, _)) = rest.split_once(",\"TTL\":") {
                if let Ok(n) = id.parse::<u64>() {
                    learn(&format!("{n:016x}"), "$LEASE", "<LEASE>");
                }
            }
        }
        if let Some(rest) = line.strip_prefix("lease ") {
            if let Some((hex, _)) = rest.split_once(" granted with TTL(") {
                learn(hex, "$LEASE", "<LEASE>");
            }
        }
        if let Some(rest) = line.strip_prefix("Member ") {
            if let Some((hex, _)) = rest.split_once(" added to cluster") {
                learn(hex.trim(), "$MEMBER", "<MEMBER>");
            }
        }
    }
}

/// Values that legitimately differ between two runs: timings, remaining TTLs,
/// and database file sizes (etcd's bbolt file grows by allocation, not by content).
const VOLATILE_AFTER: &[&str] = &[
    "took = ",
    "\"took\":\"",
    "\"Took\" : ",
    "remaining(",
    "\"ttl\":",
    "\"TTL\" : ",
    "\"dbSize\":",
    "\"dbSizeInUse\":",
    "\"DBSize\" : ",
];

/// Masks humanized sizes (`20 kB`, `1.5 MB`), as in `endpoint status`.
/// Election and lock keys end in their session's lease ID (`name/<hex>`, Go's
/// `%x`, so not always 16 digits), which differs from run to run.
fn mask_session_keys(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('/') {
        let after = &rest[i + 1..];
        let hex_len = after.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(after.len());
        out.push_str(&rest[..=i]);
        if (12..=16).contains(&hex_len) {
            out.push_str("<LEASE>");
            rest = &after[hex_len..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn mask_sizes(text: &str) -> String {
    let mut out = text.to_string();
    for unit in [" kB", " MB", " GB"] {
        let mut result = String::new();
        let mut rest = out.as_str();
        while let Some(i) = rest.find(unit) {
            let number_start = rest[..i].rfind(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(0, |p| p + 1);
            result.push_str(&rest[..number_start]);
            result.push_str("<size>");
            rest = &rest[i + unit.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// The stderr lines etcdctl writes itself (its client library's logs are ignored).
const REPORTED_ON_STDERR: &[&str] = &["Error:", "watch was canceled", "Failed to", "Invalid command", "command ["];

fn observe(stdout: &[u8], stderr: &[u8], exit: Option<i32>, masks: &[(String, &'static str)]) -> Observed {
    let mask = |text: &str| {
        let mut text = text.to_string();
        for (value, name) in masks {
            text = text.replace(value.as_str(), name);
        }
        for marker in VOLATILE_AFTER {
            text = mask_after(&text, marker);
        }
        mask_sizes(&mask_session_keys(&text))
    };
    let stderr = String::from_utf8_lossy(stderr);
    Observed {
        stdout: mask(&String::from_utf8_lossy(stdout)),
        errors: stderr
            .lines()
            .filter(|l| {
                REPORTED_ON_STDERR
                    .iter()
                    .any(|p| l.starts_with(p) || l.contains(" is healthy") || l.contains(" is unhealthy"))
            })
            .map(mask)
            .collect(),
        exit,
    }
}

/// Replaces the number-like token after each `marker` with `<~>`.
fn mask_after(text: &str, marker: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        rest = &rest[i + marker.len()..];
        let end =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == 'µ' || c == '-')).unwrap_or(rest.len());
        out.push_str("<~>");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Runs `script` with etcdctl and with hubctl, each against a fresh `server`
/// on the same ports (so IDs and revisions line up), and lists every step
/// whose output differs.
pub fn differential(server: &Path, kind: ServerKind, script: &str) -> Vec<String> {
    let (client_port, peer_port) = (free_port(), free_port());
    let reference = {
        let s = Server::start(server, client_port, peer_port);
        run_script(Tool::Etcdctl, kind, &s.endpoint(), script)
    };
    let candidate = {
        let s = Server::start(server, client_port, peer_port);
        run_script(Tool::Hubctl, kind, &s.endpoint(), script)
    };
    assert_eq!(reference.len(), candidate.len(), "step count");
    let mut diffs = Vec::new();
    for ((line, want), (_, got)) in reference.iter().zip(&candidate) {
        if want != got {
            diffs.push(format!(
                "step `{line}`:\n  etcdctl: {:?} {:?} exit {:?}\n  hubctl:  {:?} {:?} exit {:?}",
                want.stdout, want.errors, want.exit, got.stdout, got.errors, got.exit
            ));
        }
    }
    diffs
}
