//! Hand-written HTTP stand-ins a test controls: [`RecordingServer`] (an API that
//! records requests), [`RefusingProxy`] (a registry that rejects chosen requests),
//! and [`FaultProxy`] (tests/fault-proxy: latency, injected faults, a request log).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::env::tool;
use super::net::http_request;

/// One request a [`RecordingServer`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP server that records every request and answers with what
/// `respond` returns (status, JSON body): a stand-in for an API whose requests a test
/// checks against the API's documented shapes.
pub struct RecordingServer {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
}

impl RecordingServer {
    pub fn start(respond: fn(&Recorded) -> (u16, String)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || serve_one(stream, respond, &log));
            }
        });
        RecordingServer { url, requests }
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request (Content-Length bodies only); None at end of stream.
pub fn read_request(reader: &mut impl std::io::BufRead) -> Option<Recorded> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}

fn serve_one(
    mut stream: TcpStream,
    respond: fn(&Recorded) -> (u16, String),
    log: &std::sync::Mutex<Vec<Recorded>>,
) {
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    while let Some(request) = read_request(&mut reader) {
        let (status, reply) = respond(&request);
        log.lock().unwrap().push(request);
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A registry that refuses some requests: a proxy in front of a real one that
/// answers the requests `refuse` picks with 400 MANIFEST_INVALID (as a registry that
/// does not take a media type does) and forwards the rest.
pub struct RefusingProxy {
    pub host: String,
}

impl RefusingProxy {
    pub fn start(upstream: &str, refuse: fn(&Recorded) -> bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let upstream = upstream.clone();
                std::thread::spawn(move || proxy_one(stream, &upstream, refuse));
            }
        });
        RefusingProxy { host }
    }
}

fn proxy_one(mut client: TcpStream, upstream: &str, refuse: fn(&Recorded) -> bool) {
    let mut reader = std::io::BufReader::new(client.try_clone().unwrap());
    while let Some(request) = read_request(&mut reader) {
        let response = if refuse(&request) {
            let body = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":"unsupported manifest"}]}"#;
            format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        } else {
            // One upstream connection per request, read to its end.
            let Ok(mut server) = TcpStream::connect(upstream) else {
                return;
            };
            let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
            for (k, v) in &request.headers {
                if k != "connection" {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
            }
            head.push_str("connection: close\r\n\r\n");
            let mut response = Vec::new();
            if server.write_all(head.as_bytes()).is_err()
                || server.write_all(&request.body).is_err()
                || server.read_to_end(&mut response).is_err()
            {
                return;
            }
            response
        };
        if client.write_all(&response).is_err() {
            return;
        }
    }
}

/// A real network in front of a registry (tests/fault-proxy): latency, faults picked
/// by method and path, and a log of every request it saw. Stopped when dropped.
pub struct FaultProxy {
    pub host: String,
    child: Child,
}

/// One request as the proxy saw it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ProxyEntry {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    #[serde(default)]
    pub fault: String,
    /// When the request arrived and when its answer was done, in ms since the proxy
    /// started.
    #[serde(default)]
    pub start_ms: u64,
    #[serde(default)]
    pub end_ms: u64,
    /// The request body's bytes that reached the registry, and whether they were sent
    /// chunked (no length announced).
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub chunked: bool,
}

impl FaultProxy {
    /// In front of `upstream`, with no added latency.
    pub fn start(upstream: &str) -> Self {
        Self::start_with_latency(upstream, "0s")
    }

    /// `latency` as Go writes durations ("25ms"), added each way.
    pub fn start_with_latency(upstream: &str, latency: &str) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(tool("fault-proxy"))
            .args(["-upstream", upstream, "-latency", latency])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fault-proxy");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the proxy's address");
        let host = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("fault-proxy said {line:?}"))
            .to_string();
        FaultProxy { host, child }
    }

    /// Adds faults: `[{"method":"PUT","path":"/manifests/","action":"status","status":503}]`.
    pub fn inject(&self, faults: Value) {
        let (status, body) = http_request(
            &self.host,
            "POST",
            "/__proxy/faults",
            faults.to_string().as_bytes(),
        )
        .expect("fault-proxy answers");
        assert_eq!(
            status,
            200,
            "fault-proxy refused the faults: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// Every request seen since the start (or the last `clear`).
    pub fn log(&self) -> Vec<ProxyEntry> {
        let (_, body) =
            http_request(&self.host, "GET", "/__proxy/log", b"").expect("fault-proxy answers");
        serde_json::from_slice::<Option<Vec<ProxyEntry>>>(&body)
            .expect("proxy log")
            .unwrap_or_default()
    }

    pub fn clear(&self) {
        http_request(&self.host, "DELETE", "/__proxy/log", b"").expect("fault-proxy answers");
        http_request(&self.host, "DELETE", "/__proxy/faults", b"").expect("fault-proxy answers");
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
