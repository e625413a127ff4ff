//! Delivering actions to a webhook, at least once.
//!
//! Each request is retried on a connection error, a timeout, 429 and 5xx,
//! with exponential backoff and full jitter, honouring `Retry-After`; any
//! other answer that is not 2xx refuses the request for good. The caller
//! commits input positions only after every request of a batch was
//! acknowledged or refused (and dead-lettered), the way Vector's sinks
//! acknowledge end to end: a crash in between delivers again, with the same
//! `Idempotency-Key`.

use super::config::WebhookConfig;
use crate::pipeline::invalid::InvalidPipeline;
use crate::telemetry::metrics;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// One request: the keys of the actions it carries (in order) and its body.
#[derive(Debug, Clone)]
pub struct Request {
    pub keys: Vec<String>,
    pub body: Vec<u8>,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged with a 2xx.
    Delivered { attempts: u32 },
    /// Refused with a status that retrying will not change (4xx other than 429).
    Refused { status: u16, body: String },
    /// Still failing after `give_up_after_ms`.
    GaveUp { attempts: u32, last: String },
    /// The pipeline is stopping: not acknowledged, delivered again after the restart.
    Stopped,
}

/// The webhook of one action, with its own HTTP client, driven on the
/// process's runtime for blocking calls ([`crate::sync::spawn`]).
pub struct Webhook {
    shared: Arc<Shared>,
}

/// Requests on their way: done when every one was acknowledged, refused,
/// given up on, or stopped.
pub struct Delivery {
    task: tokio::task::JoinHandle<Vec<Outcome>>,
    requests: usize,
}

impl Delivery {
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// The outcomes, in the order of the requests (waits if not finished).
    pub fn outcomes(self) -> Vec<Outcome> {
        crate::sync::block_on(self.task).unwrap_or_else(|e| {
            // A delivery task that panicked: its requests count as not acknowledged.
            tracing::error!(error = %e, "a webhook delivery task failed");
            vec![Outcome::Stopped; self.requests]
        })
    }
}

struct Shared {
    labels: [String; 2],
    config: WebhookConfig,
    url: String,
    method: reqwest::Method,
    headers: HeaderMap,
    client: reqwest::Client,
    status: Arc<crate::pipeline::stats::ActionStats>,
}

impl Webhook {
    /// Resolve `${NAME}`s from the environment and build the client.
    pub fn new(pipeline: &str, action: &str, config: &WebhookConfig, status: Arc<crate::pipeline::stats::ActionStats>) -> anyhow::Result<Webhook> {
        let url = expand_env(&config.url).map_err(|e| InvalidPipeline(format!("action `{action}`: webhook.url: {e}")))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let value = expand_env(value).map_err(|e| InvalidPipeline(format!("action `{action}`: webhook header `{name}`: {e}")))?;
            let name = HeaderName::try_from(name.as_str()).map_err(|e| InvalidPipeline(format!("action `{action}`: webhook header name `{name}`: {e}")))?;
            let mut value = HeaderValue::try_from(value).map_err(|e| InvalidPipeline(format!("action `{action}`: webhook header `{name}`: {e}")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let content_type =
            HeaderValue::try_from(config.content_type.as_str()).map_err(|e| InvalidPipeline(format!("action `{action}`: webhook.content_type: {e}")))?;
        headers.insert(CONTENT_TYPE, content_type);
        let method = reqwest::Method::from_bytes(config.method.as_bytes())?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|e| anyhow::anyhow!("action `{action}`: building the HTTP client: {e}"))?;
        let labels = [pipeline.to_owned(), action.to_owned()];
        Ok(Webhook { shared: Arc::new(Shared { labels, config: config.clone(), url, method, headers, client, status }) })
    }

    /// Send every request, at most `max_in_flight` at once, each until it is
    /// acknowledged, refused, given up on, or `stop` is raised. Outcomes are
    /// in the order of `requests`.
    pub fn deliver(&self, requests: &[Request], stop: &Arc<AtomicBool>) -> Vec<Outcome> {
        self.start(requests.to_vec(), stop).outcomes()
    }

    /// [`Webhook::deliver`] in the background: the caller goes on and looks
    /// at the returned delivery when it needs the outcomes.
    pub fn start(&self, requests: Vec<Request>, stop: &Arc<AtomicBool>) -> Delivery {
        let (shared, stop, n) = (self.shared.clone(), stop.clone(), requests.len());
        let task = crate::sync::spawn(async move {
            let max = shared.config.max_in_flight;
            let mut outcomes: Vec<Option<Outcome>> = vec![None; requests.len()];
            let mut set = tokio::task::JoinSet::new();
            let mut pending = requests.into_iter().enumerate();
            loop {
                while set.len() < max {
                    let Some((i, request)) = pending.next() else { break };
                    let (shared, stop) = (shared.clone(), stop.clone());
                    set.spawn(async move { (i, shared.send(request, stop).await) });
                }
                match set.join_next().await {
                    Some(Ok((i, outcome))) => outcomes[i] = Some(outcome),
                    // A delivery task that panicked: its requests count as not acknowledged.
                    Some(Err(e)) => tracing::error!(error = %e, "a webhook delivery task failed"),
                    None => break,
                }
            }
            outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Stopped)).collect()
        });
        Delivery { task, requests: n }
    }
}

impl Shared {
    async fn send(&self, request: Request, stop: Arc<AtomicBool>) -> Outcome {
        let c = &self.config;
        let labels = [self.labels[0].as_str(), self.labels[1].as_str()];
        let m = metrics();
        let started = Instant::now();
        let mut backoff = Duration::from_millis(c.retry_initial_ms);
        let key = request.keys.join(",");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let sent = self
                .client
                .request(self.method.clone(), &self.url)
                .headers(self.headers.clone())
                .header("Idempotency-Key", &key)
                .timeout(Duration::from_millis(c.timeout_ms))
                .body(request.body.clone())
                .send()
                .await;
            let (reason, retry_after, last) = match sent {
                Ok(resp) if resp.status().is_success() => {
                    m.action_latency.with_label_values(&labels).observe(started.elapsed().as_secs_f64());
                    m.action_sent.with_label_values(&labels).inc_by(request.keys.len() as u64);
                    self.status.delivered(request.keys.len() as u64);
                    return Outcome::Delivered { attempts };
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp.headers().get(RETRY_AFTER).and_then(parse_retry_after);
                    let body = body_start(resp).await;
                    let last = format!("the webhook answered {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") });
                    match status.as_u16() {
                        429 => ("throttled", retry_after, last),
                        500..=599 => ("server_error", retry_after, last),
                        code => return Outcome::Refused { status: code, body },
                    }
                }
                Err(e) if e.is_timeout() => ("timeout", None, format!("no answer within timeout_ms = {}", c.timeout_ms)),
                Err(e) => ("connection", None, format!("could not reach {}: {}", redact(&self.url), crate::telemetry::with_causes(&e))),
            };
            m.action_retries.with_label_values(&[labels[0], labels[1], reason]).inc();
            self.status.retrying(&last);
            let jittered = backoff.mul_f64(0.5 + SmallRng::from_os_rng().random::<f64>() * 0.5);
            let wait = retry_after.unwrap_or(jittered);
            backoff = (backoff * 2).min(Duration::from_millis(c.retry_max_ms));
            if c.give_up_after_ms > 0 && started.elapsed() + wait > Duration::from_millis(c.give_up_after_ms) {
                return Outcome::GaveUp { attempts, last };
            }
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if stop.load(Ordering::SeqCst) {
                    return Outcome::Stopped;
                }
                tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(100))).await;
            }
        }
    }
}

/// The first KiB of a refusal's body, for the dead letter.
async fn body_start(mut resp: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < 1024 {
        match tokio::time::timeout(Duration::from_secs(2), resp.chunk()).await {
            Ok(Ok(Some(chunk))) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(1024);
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

/// `Retry-After`: delay seconds or an HTTP date.
fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    let text = v.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// The URL without its query string, which often holds a token.
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Replace `${NAME}` with the environment variable `NAME`.
pub fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("`${{` without a closing `}}` in {text:?}"))?;
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| format!("the environment variable `{name}` is not set (it is named in the config as ${{{name}}})"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};

    /// A server answering every request with `status` (and `Retry-After: 0` on 429); returns its URL and a request counter.
    fn server(status: u16) -> (String, Arc<std::sync::atomic::AtomicU64>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                    let mut conn = conn;
                    loop {
                        let (mut line, mut length) = (String::new(), 0usize);
                        while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                            line.clear();
                        }
                        if line.is_empty() {
                            return;
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        seen.fetch_add(1, Ordering::SeqCst);
                        let extra = if status == 429 { "Retry-After: 0\r\n" } else { "" };
                        let answer = format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: 4\r\n\r\nnope");
                        if conn.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, count)
    }

    fn webhook(url: &str, give_up_after_ms: u64) -> Webhook {
        let config: WebhookConfig =
            toml::from_str(&format!("url = \"{url}\"\nretry_initial_ms = 5\nretry_max_ms = 20\ngive_up_after_ms = {give_up_after_ms}")).expect("config");
        Webhook::new("p", "a", &config, Arc::default()).expect("webhook")
    }

    fn one() -> Vec<Request> {
        vec![Request { keys: vec!["p/a/t/0/1/0".into()], body: b"{}".to_vec() }]
    }

    #[test]
    fn a_4xx_is_refused_at_once_with_its_body_and_a_429_is_retried() {
        let (url, count) = server(404);
        let outcomes = webhook(&url, 60_000).deliver(&one(), &Arc::default());
        assert_eq!(outcomes, vec![Outcome::Refused { status: 404, body: "nope".into() }]);
        assert_eq!(count.load(Ordering::SeqCst), 1, "not retried");

        let (url, count) = server(429);
        let outcomes = webhook(&url, 300).deliver(&one(), &Arc::default());
        assert!(matches!(&outcomes[0], Outcome::GaveUp { last, .. } if last.contains("429")), "{outcomes:?}");
        assert!(count.load(Ordering::SeqCst) > 3, "retried until give_up_after_ms");
    }

    #[test]
    fn https_is_spoken_and_a_failed_handshake_is_retried_like_a_connection_error() {
        // A plain-HTTP server behind an https:// URL: the TLS handshake fails, which is retried.
        let (url, _) = server(200);
        let outcomes = webhook(&url.replace("http://", "https://"), 200).deliver(&one(), &Arc::default());
        assert!(matches!(&outcomes[0], Outcome::GaveUp { last, .. } if last.starts_with("could not reach https://")), "{outcomes:?}");
    }

    #[test]
    fn an_unreachable_webhook_is_retried_until_stopped_and_then_not_acknowledged() {
        // A port nothing listens on: every attempt is a connection error.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let hook = webhook(&format!("http://127.0.0.1:{port}/"), 0);
        let stop = Arc::new(AtomicBool::new(false));
        let raise = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            raise.store(true, Ordering::SeqCst);
        });
        let started = Instant::now();
        assert_eq!(hook.deliver(&one(), &stop), vec![Outcome::Stopped]);
        assert!(started.elapsed() < Duration::from_secs(5), "stopping interrupts the retries");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after(&HeaderValue::from_static("3")), Some(Duration::from_secs(3)));
        let past = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    #[test]
    fn environment_variables_fill_the_url_and_headers() {
        // PATH is set wherever the tests run.
        let path = std::env::var("PATH").expect("PATH");
        assert_eq!(expand_env("a${PATH}b").unwrap(), format!("a{path}b"));
        assert_eq!(expand_env("x").unwrap(), "x");
        assert!(expand_env("${SLUICE_SURELY_NOT_SET_42}").unwrap_err().contains("`SLUICE_SURELY_NOT_SET_42` is not set"));
    }
}
