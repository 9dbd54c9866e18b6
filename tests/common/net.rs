//! Loopback plumbing shared by the servers the tests start: free and closed ports,
//! [`start_server`] (spawn a process on a free port and wait until it answers,
//! retrying when another test took the port), and a minimal HTTP/1.0 client.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A loopback port nothing listens on: a service that is down.
pub fn closed_port() -> u16 {
    free_port()
}

/// Starts a server on a free loopback port and waits until `path` answers with a
/// status `up` accepts; a
/// server that exits first (its port was taken meanwhile) is started again on
/// another port. Keeps the child in `children`; returns the host and the body.
pub(super) fn start_server(
    what: &str,
    path: &str,
    up: impl Fn(u16) -> bool,
    children: &mut Vec<Child>,
    spawn: impl Fn(&str) -> Child,
) -> (String, Vec<u8>) {
    let mut failures = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut child = spawn(&host);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((_, body)) = http_get(&host, path).filter(|(s, _)| up(*s)) {
                // The answer may come from another test's server that took the port
                // first (ours then fails to bind): keep only a server that holds it.
                if listens_on(child.id(), port) == Some(false) {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!("another process answered on {host}"));
                    break;
                }
                children.push(child);
                return (host, body);
            }
            if let Some(status) = child.try_wait().ok().flatten() {
                // Its port was taken meanwhile, most likely: try another.
                failures.push(format!("it exited ({status}) on {host}"));
                break;
            }
            assert!(Instant::now() < deadline, "{what} did not start on {host}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("{what} did not start three times: {}", failures.join("; "));
}

/// Whether process `pid` holds the socket listening on loopback `port`, read from
/// /proc (None when /proc cannot say).
fn listens_on(pid: u32, port: u16) -> Option<bool> {
    let sockets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            let inode = target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?;
            Some(inode.to_string())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?
        + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let port = format!(":{port:04X}");
    Some(table.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // local address, state (0A = LISTEN), inode
        f.len() > 9 && f[1].ends_with(&port) && f[3] == "0A" && sockets.iter().any(|s| s == f[9])
    }))
}

/// Status and body of one HTTP/1.0 request on loopback, None when nothing answers.
pub fn http_request(host: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    http_request_typed(host, method, path, None, body)
}

/// [`http_request`] with a `Content-Type`.
pub fn http_request_typed(
    host: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let typed = content_type
        .map(|t| format!("Content-Type: {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\n{typed}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut response = Vec::new();
    s.read_to_end(&mut response).ok()?;
    let status = String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let body = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| response[i + 4..].to_vec())
        .unwrap_or_default();
    Some((status, body))
}

/// Status and body of a plain HTTP/1.0 GET on loopback, None when nothing answers.
pub(super) fn http_get(host: &str, path: &str) -> Option<(u16, Vec<u8>)> {
    http_request(host, "GET", path, b"")
}
