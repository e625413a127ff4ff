//! An HTTP receiver for webhook tests that misbehaves on purpose.
//!
//! A plain HTTP/1.1 server on 127.0.0.1 (keep-alive, one thread per
//! connection) that answers each request by a plan: by the request's number
//! among all it received, and by what its body holds. Every request is
//! recorded with its `Idempotency-Key`, its body and what it was answered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to answer one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Ok,
    /// A status with a body.
    Status(u16, String),
    /// 429 with `Retry-After: <seconds>`.
    Throttle(u64),
    /// Wait this long, then answer 200 (past the client's timeout, it counts as a failure there).
    Slow(Duration),
    /// Read the request and close the connection without answering.
    Drop,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// 1-based, over all requests.
    pub number: u64,
    /// The request path, without the query string.
    pub path: String,
    pub idempotency_key: String,
    pub authorization: String,
    pub body: Vec<u8>,
    pub answer: Answer,
}

type Plan = dyn Fn(u64, &[u8]) -> Answer + Send + Sync;

pub struct Receiver {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    /// Start on a free port; `plan(number, body)` chooses each answer.
    pub fn start(plan: impl Fn(u64, &[u8]) -> Answer + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking accept");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let plan: Arc<Plan> = Arc::new(plan);
        let count = Arc::new(AtomicU64::new(0));
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (r, plan, count) = (r.clone(), plan.clone(), count.clone());
                        std::thread::spawn(move || serve(conn, &r, &*plan, &count));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver { port, received, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("receiver lock").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(conn: TcpStream, received: &Mutex<Vec<Received>>, plan: &Plan, count: &AtomicU64) {
    let _ = conn.set_nonblocking(false);
    let mut reader = BufReader::new(conn.try_clone().expect("clone the connection"));
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").split('?').next().unwrap_or("").to_owned();
        let (mut length, mut key, mut authorization) = (0usize, String::new(), String::new());
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "idempotency-key" => key = value.trim().to_owned(),
                    "authorization" => authorization = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let number = count.fetch_add(1, Ordering::SeqCst) + 1;
        let answer = plan(number, &body);
        received.lock().expect("receiver lock").push(Received { number, path, idempotency_key: key, authorization, body, answer: answer.clone() });
        let response = match answer {
            Answer::Ok => respond(200, "", ""),
            Answer::Status(code, text) => respond(code, "", &text),
            Answer::Throttle(secs) => respond(429, &format!("Retry-After: {secs}\r\n"), "slow down"),
            Answer::Slow(wait) => {
                std::thread::sleep(wait);
                respond(200, "", "")
            }
            Answer::Drop => return,
        };
        if conn.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn respond(code: u16, headers: &str, body: &str) -> String {
    format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\n{headers}Content-Type: text/plain\r\n\r\n{body}", body.len())
}
