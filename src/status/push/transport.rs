//! The HTTP transport every push target shares: one outbox message is one request
//! (`meta`: `url` and `content_type`; the body as stored), sent with the target's
//! credentials and headers, which stay in the config and never reach storage.
//!
//! Messages go strictly in order ([`Transport::IN_ORDER`]): a status that was not taken
//! holds back the ones written after it, so a peer that was down receives them in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::db::{now, OutboxMessage};
use crate::status::outbox::{Outcome, Transport};

/// How a target proves who it is.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    /// `Authorization: token TOKEN` (GitHub's form).
    Token(String),
    Basic {
        user: String,
        password: String,
    },
}

/// The longest wait for connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for a whole exchange: a peer that hangs is a failure, retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The wait after a rate limit that names no reset time.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// How much of a peer's error body goes into the message's last error.
const ANSWER_CHARS: usize = 300;

/// Sends outbox messages as HTTP requests.
pub struct HttpTransport {
    client: reqwest::Client,
    auth: Auth,
    headers: HeaderMap,
    /// Log each request and answer.
    debug: bool,
    /// Until when the peer asked to be left alone (a rate limit, `Retry-After`), and its
    /// answer: nothing is sent to it before, whichever message is next.
    hold: Mutex<Option<(f64, String)>>,
    /// HttpStatusPush's chunks; without, one message is one request.
    packets: Option<Packets>,
    /// Whether the last chunk failed: the next goes one event at a time, as 0.8 did.
    last_failed: AtomicBool,
}

/// HttpStatusPush's requests, as Buildbot 0.8's queued push makes them: one event per
/// message, and up to `chunk_size` of them posted together as the form field `packets`
/// (a JSON list) with `extra_post_params`, halved until the body fits
/// `max_request_size`.
pub struct Packets {
    pub chunk_size: usize,
    pub max_request_size: usize,
    pub extra_post_params: Vec<(String, String)>,
    /// `bufferDelay`: how long a first event waits for others to join it.
    pub buffer_delay: Duration,
    /// `retryDelay`: the wait after a failed request, instead of the outbox's backoff.
    pub retry_delay: Duration,
}

impl Packets {
    /// The form body posting `events`, each an event's JSON text.
    pub fn form<'a>(&self, events: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut list = Vec::from(&b"["[..]);
        for (n, event) in events.into_iter().enumerate() {
            if n > 0 {
                list.push(b',');
            }
            list.extend_from_slice(event);
        }
        list.push(b']');
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("packets", &String::from_utf8_lossy(&list));
        for (name, value) in &self.extra_post_params {
            form.append_pair(name, value);
        }
        form.finish().into_bytes()
    }
}

impl HttpTransport {
    /// A client for `base_url`'s scheme: https verified as the mail relay is
    /// ([`crate::runtime::tls`]). `headers` go with every request.
    pub fn new(
        base_url: &str,
        auth: Auth,
        headers: &[(String, String)],
        debug: bool,
    ) -> Result<HttpTransport, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("moonbot/", env!("CARGO_PKG_VERSION")));
        if base_url.starts_with("https://") {
            let tls = crate::runtime::tls::tls_config()
                .map_err(|e| format!("{base_url}: cannot set up TLS: {e}"))?;
            builder = builder.use_preconfigured_tls((*tls).clone());
        }
        let client = builder
            .build()
            .map_err(|e| format!("{base_url}: cannot set up an HTTP client: {e}"))?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name =
                HeaderName::try_from(name.as_str()).map_err(|e| format!("header '{name}': {e}"))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|e| format!("header '{name}': {e}"))?;
            map.insert(name, value);
        }
        Ok(HttpTransport {
            client,
            auth,
            headers: map,
            debug,
            hold: Mutex::new(None),
            packets: None,
            last_failed: AtomicBool::new(false),
        })
    }

    /// Posts events in chunks ([`Packets`]) rather than one message per request.
    pub fn with_packets(mut self, packets: Packets) -> HttpTransport {
        self.packets = Some(packets);
        self
    }
}

/// What a push target writes to the outbox's `meta` for one request.
pub fn request_meta(url: &str, content_type: &str) -> Value {
    json!({"url": url, "content_type": content_type})
}

impl Transport for HttpTransport {
    /// reqwest keeps its own connections.
    type Session = ();
    const IN_ORDER: bool = true;

    async fn open(&self) -> Result<(), String> {
        Ok(())
    }

    fn gather(&self) -> Duration {
        self.packets
            .as_ref()
            .map_or(Duration::ZERO, |packets| packets.buffer_delay)
    }

    async fn send(&self, _: &mut (), message: &OutboxMessage) -> Outcome {
        let Some((url, content_type)) = request_of(message) else {
            return Outcome::Refused(format!("not an HTTP request: {}", message.meta));
        };
        self.post(url, content_type, message.body.clone(), &message.summary)
            .await
    }

    async fn send_chunk(&self, session: &mut (), messages: &[OutboxMessage]) -> Vec<Outcome> {
        let Some(packets) = &self.packets else {
            return vec![self.send(session, &messages[0]).await];
        };
        self.post_packets(packets, messages).await
    }

    async fn close(&self, _: ()) {}
}

/// A stored request's URL and content type.
fn request_of(message: &OutboxMessage) -> Option<(&str, &str)> {
    Some((
        message.meta["url"].as_str()?,
        message.meta["content_type"].as_str()?,
    ))
}

impl HttpTransport {
    /// POSTs `body` to `url`, minding a hold the peer asked for.
    async fn post(&self, url: &str, content_type: &str, body: Vec<u8>, summary: &str) -> Outcome {
        if let Some((until, error)) = self.held() {
            return Outcome::Deferred {
                error: format!("held back by the peer's earlier answer: {error}"),
                until,
            };
        }
        let logged = self
            .debug
            .then(|| String::from_utf8_lossy(&body).into_owned());
        let mut request = self
            .client
            .post(url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, content_type)
            .body(body);
        request = match &self.auth {
            Auth::None => request,
            Auth::Token(token) => request.header("Authorization", format!("token {token}")),
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Outcome::Failed(format!("POST {url}: {}", describe(&error))),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let answer = response.text().await.unwrap_or_default();
        if let Some(body) = logged {
            tracing::info!("POST {url}: {summary}\n{body}\n-> {status}\n{answer}");
        }
        let outcome = outcome(url, status, &headers, &answer, now());
        if let Outcome::Deferred { error, until } = &outcome {
            *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = Some((*until, error.clone()));
        }
        outcome
    }

    /// Posts the leading events of `messages` (those for the first one's URL, at most
    /// `chunk_size`, one after a failure) as one request; answers the outcome of each.
    async fn post_packets(&self, packets: &Packets, messages: &[OutboxMessage]) -> Vec<Outcome> {
        let Some((url, content_type)) = request_of(&messages[0]) else {
            return vec![Outcome::Refused(format!(
                "not an HTTP request: {}",
                messages[0].meta
            ))];
        };
        let same_url = messages
            .iter()
            .take_while(|m| request_of(m).is_some_and(|(u, _)| u == url))
            .count();
        let mut count = match self.last_failed.load(Ordering::Relaxed) {
            true => 1,
            false => packets.chunk_size,
        }
        .min(same_url);
        let body = loop {
            let body = packets.form(messages[..count].iter().map(|m| &m.body[..]));
            if body.len() <= packets.max_request_size {
                break body;
            }
            if count == 1 {
                return vec![Outcome::Refused(format!(
                    "{} bytes is over maxHttpRequestSize ({})",
                    body.len(),
                    packets.max_request_size
                ))];
            }
            count /= 2;
        };
        let summary = match count {
            1 => messages[0].summary.clone(),
            n => format!("{n} events from '{}'", messages[0].summary),
        };
        let outcome = match self.post(url, content_type, body, &summary).await {
            Outcome::Failed(error) => Outcome::Deferred {
                error,
                until: now() + packets.retry_delay.as_secs_f64(),
            },
            other => other,
        };
        self.last_failed
            .store(outcome != Outcome::Accepted, Ordering::Relaxed);
        vec![outcome; count]
    }

    /// The hold the peer asked for, while it lasts.
    fn held(&self) -> Option<(f64, String)> {
        let mut hold = self.hold.lock().unwrap_or_else(|e| e.into_inner());
        match &*hold {
            Some((until, _)) if *until > now() => hold.clone(),
            Some(_) => {
                *hold = None;
                None
            }
            None => None,
        }
    }
}

/// What a peer's answer means for the message: 2xx taken; a rate limit or `Retry-After`
/// waited out; 5xx, 408 and 429 retried; any other 4xx refused for good.
fn outcome(url: &str, status: StatusCode, headers: &HeaderMap, body: &str, at: f64) -> Outcome {
    if status.is_success() {
        return Outcome::Accepted;
    }
    let error = format!("POST {url}: {status}: {}", one_line(body));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = header("retry-after").and_then(|v| v.trim().parse::<f64>().ok());
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (header("x-ratelimit-remaining") == Some("0")
                || retry_after.is_some()
                || body.to_lowercase().contains("rate limit")));
    if rate_limited {
        let reset = header("x-ratelimit-reset").and_then(|v| v.trim().parse::<f64>().ok());
        let until = match (retry_after, reset) {
            (Some(seconds), _) => at + seconds,
            (None, Some(reset)) => reset,
            (None, None) => at + RATE_LIMIT_WAIT.as_secs_f64(),
        };
        return Outcome::Deferred { error, until };
    }
    let retried = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || !status.is_client_error();
    match (retried, retry_after) {
        (true, Some(seconds)) => Outcome::Deferred {
            error,
            until: at + seconds,
        },
        (true, None) => Outcome::Failed(error),
        (false, _) => Outcome::Refused(error),
    }
}

/// reqwest's error with its causes, on one line.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn one_line(body: &str) -> String {
    let line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(ANSWER_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Outcome {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                HeaderName::try_from(*name).unwrap(),
                HeaderValue::try_from(*value).unwrap(),
            );
        }
        outcome(
            "u",
            StatusCode::from_u16(status).unwrap(),
            &map,
            body,
            1000.0,
        )
    }

    #[test]
    fn answers_map_to_outcomes_as_http_means_them() {
        assert_eq!(answer(201, &[], ""), Outcome::Accepted);
        assert_eq!(
            answer(422, &[], "{\"message\": \"Validation\nFailed\"}"),
            Outcome::Refused(
                "POST u: 422 Unprocessable Entity: {\"message\": \"Validation Failed\"}".into()
            )
        );
        assert!(matches!(answer(500, &[], ""), Outcome::Failed(_)));
        assert!(matches!(answer(408, &[], ""), Outcome::Failed(_)));
        assert!(matches!(
            answer(503, &[("retry-after", "7")], ""),
            Outcome::Deferred { until, .. } if until == 1007.0
        ));
        assert!(matches!(
            answer(429, &[], ""),
            Outcome::Deferred { until, .. } if until == 1060.0
        ));
    }

    #[test]
    fn github_rate_limits_wait_for_their_reset_and_plain_forbidden_is_refused() {
        let secondary = answer(
            403,
            &[("retry-after", "30")],
            "{\"message\": \"You have exceeded a secondary rate limit.\"}",
        );
        assert!(matches!(secondary, Outcome::Deferred { until, .. } if until == 1030.0));
        let primary = answer(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "5000"),
            ],
            "{\"message\": \"API rate limit exceeded\"}",
        );
        assert!(matches!(primary, Outcome::Deferred { until, .. } if until == 5000.0));
        assert!(matches!(
            answer(403, &[], "{\"message\": \"Resource not accessible\"}"),
            Outcome::Refused(_)
        ));
    }
}
