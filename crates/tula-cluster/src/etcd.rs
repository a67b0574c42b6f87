//! A small etcd v3 client over its JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn`,
//! `/v3/kv/put`, `/v3/lease/*`, streaming `/v3/watch`; keys and values base64),
//! which etcd 3.4 serves on its client port: no gRPC stack to build.
//!
//! Calls are blocking (ureq) and bounded by [`CALL_TIMEOUT`]; the first
//! endpoint that answers serves the call, and is tried first next time.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// The longest a call other than a watch may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A watch that hears nothing for this long is reopened (it resumes where it
/// was, so nothing is lost): a dead path cannot keep a node waiting forever.
pub const WATCH_IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered.
    #[error("etcd is unreachable at {endpoints}: {message}")]
    Unreachable { endpoints: String, message: String },
    /// An endpoint answered with an error or something that is not etcd's JSON.
    #[error("etcd at {endpoint} answered {path} with {message}")]
    Answer {
        endpoint: String,
        path: String,
        message: String,
    },
}

/// One key and its value, as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The etcd revision that last changed it.
    pub mod_revision: i64,
}

/// What a watch reports: the keys put (and deleted) since it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(KeyValue),
    Delete(String),
}

/// The etcd cluster's client endpoints.
pub struct Etcd {
    endpoints: Vec<String>,
    /// The endpoint that answered last.
    preferred: AtomicUsize,
    agent: ureq::Agent,
    watch_agent: ureq::Agent,
}

impl Etcd {
    /// A client of `endpoints` (`http://HOST:PORT`); nothing is contacted yet.
    pub fn new(endpoints: &[String]) -> Etcd {
        let agent = |per_read: Option<Duration>, global: Option<Duration>| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(CALL_TIMEOUT))
                .timeout_per_read(per_read)
                .timeout_global(global)
                .build()
                .into()
        };
        Etcd {
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            preferred: AtomicUsize::new(0),
            agent: agent(None, Some(CALL_TIMEOUT)),
            watch_agent: agent(Some(WATCH_IDLE), None),
        }
    }

    /// The endpoints, comma-separated (for messages).
    pub fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    /// `key`'s value and the store's revision when it was read.
    pub fn get(&self, key: &str) -> Result<(i64, Option<KeyValue>), EtcdError> {
        let answer: RangeAnswer = self.call("/v3/kv/range", json!({ "key": encode(key) }))?;
        Ok((answer.header.revision, answer.kvs.into_iter().next().map(KeyValue::from)))
    }

    /// Every key under `prefix`, sorted by key, and the store's revision.
    pub fn get_prefix(&self, prefix: &str) -> Result<(i64, Vec<KeyValue>), EtcdError> {
        let answer: RangeAnswer = self.call(
            "/v3/kv/range",
            json!({ "key": encode(prefix), "range_end": encode_bytes(&prefix_end(prefix)) }),
        )?;
        Ok((answer.header.revision, answer.kvs.into_iter().map(KeyValue::from).collect()))
    }

    /// Puts `value` at `key`, bound to `lease` if given (gone when the lease expires).
    pub fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<(), EtcdError> {
        let mut body = json!({ "key": encode(key), "value": encode_bytes(value) });
        if let Some(lease) = lease {
            body["lease"] = json!(lease.to_string());
        }
        let _: Value = self.call("/v3/kv/put", body)?;
        Ok(())
    }

    /// One transaction: if `guard`'s value is `expected` (`None`: the key does
    /// not exist), puts every `(key, value)`. Otherwise changes nothing and
    /// returns the current value of each key in `read_on_failure`.
    pub fn put_if(
        &self,
        guard: &str,
        expected: Option<&[u8]>,
        puts: &[(&str, &[u8])],
        read_on_failure: &[&str],
    ) -> Result<Result<(), Vec<Option<KeyValue>>>, EtcdError> {
        let compare = match expected {
            Some(value) => json!({
                "key": encode(guard), "target": "VALUE", "result": "EQUAL", "value": encode_bytes(value)
            }),
            None => json!({
                "key": encode(guard), "target": "CREATE", "result": "EQUAL", "create_revision": "0"
            }),
        };
        let success: Vec<Value> = puts
            .iter()
            .map(|(k, v)| json!({ "request_put": { "key": encode(k), "value": encode_bytes(v) } }))
            .collect();
        let failure: Vec<Value> = read_on_failure
            .iter()
            .map(|k| json!({ "request_range": { "key": encode(k) } }))
            .collect();
        let answer: TxnAnswer = self.call(
            "/v3/kv/txn",
            json!({ "compare": [compare], "success": success, "failure": failure }),
        )?;
        if answer.succeeded {
            return Ok(Ok(()));
        }
        Ok(Err(answer
            .responses
            .into_iter()
            .map(|r| {
                r.response_range
                    .and_then(|range| range.kvs.into_iter().next())
                    .map(KeyValue::from)
            })
            .collect()))
    }

    /// A new lease of `ttl` seconds: its id.
    pub fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let answer: LeaseAnswer =
            self.call("/v3/lease/grant", json!({ "TTL": ttl.as_secs().max(1).to_string() }))?;
        answer.id.ok_or_else(|| self.answer_error("/v3/lease/grant", "no lease id".into()))
    }

    /// Renews `lease`; false if it had already expired.
    pub fn keep_alive(&self, lease: i64) -> Result<bool, EtcdError> {
        #[derive(Deserialize)]
        struct Stream {
            result: Option<LeaseAnswer>,
        }
        let answer: Stream = self.call("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))?;
        Ok(answer.result.is_some_and(|r| r.ttl.unwrap_or(0) > 0))
    }

    /// Watches `key` (or every key under it, with `prefix`) from etcd
    /// revision `from` on. The stream ends (`None`) or fails when etcd goes
    /// away or stays silent for [`WATCH_IDLE`]; watch again from the last
    /// revision seen + 1 to resume.
    pub fn watch(&self, key: &str, prefix: bool, from: i64) -> Result<Watch, EtcdError> {
        let mut request = json!({ "key": encode(key), "start_revision": from.to_string() });
        if prefix {
            request["range_end"] = json!(encode_bytes(&prefix_end(key)));
        }
        let path = "/v3/watch";
        let body = json!({ "create_request": request });
        let (endpoint, response) = self.send(&self.watch_agent, path, &body)?;
        let reader = BufReader::new(response.into_body().into_with_config().limit(u64::MAX).reader());
        Ok(Watch { endpoint, reader })
    }

    /// POSTs `body` to `path` at the first endpoint that answers; decodes the answer.
    fn call<T: DeserializeOwned>(&self, path: &str, body: Value) -> Result<T, EtcdError> {
        let (endpoint, response) = self.send(&self.agent, path, &body)?;
        let text = response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .read_to_string()
            .map_err(|e| EtcdError::Unreachable {
                endpoints: endpoint.clone(),
                message: format!("reading the answer to {path}: {e}"),
            })?;
        serde_json::from_str(&text).map_err(|e| EtcdError::Answer {
            endpoint,
            path: path.into(),
            message: format!("undecodable JSON ({e}): {}", excerpt(&text)),
        })
    }

    fn send(
        &self,
        agent: &ureq::Agent,
        path: &str,
        body: &Value,
    ) -> Result<(String, ureq::http::Response<ureq::Body>), EtcdError> {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in 0..self.endpoints.len() {
            let index = (first + i) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            match agent.post(format!("{endpoint}{path}")).send_json(body) {
                Ok(response) if response.status().is_success() => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok((endpoint.clone(), response));
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.into_body().read_to_string().unwrap_or_default();
                    return Err(EtcdError::Answer {
                        endpoint: endpoint.clone(),
                        path: path.into(),
                        message: format!("HTTP {status}: {}", excerpt(&text)),
                    });
                }
                Err(e) => failures.push(format!("{endpoint}: {e}")),
            }
        }
        Err(EtcdError::Unreachable {
            endpoints: self.endpoints(),
            message: if failures.is_empty() {
                "no endpoint configured".into()
            } else {
                failures.join("; ")
            },
        })
    }

    fn answer_error(&self, path: &str, message: String) -> EtcdError {
        EtcdError::Answer {
            endpoint: self.endpoints[self.preferred.load(Ordering::Relaxed) % self.endpoints.len()]
                .clone(),
            path: path.into(),
            message,
        }
    }
}

/// An open watch: each [`Watch::next_events`] waits for etcd's next message.
pub struct Watch {
    endpoint: String,
    reader: BufReader<ureq::BodyReader<'static>>,
}

impl Watch {
    /// The next batch of events and the etcd revision they bring the watcher
    /// to; `None` when etcd ended the stream.
    pub fn next_events(&mut self) -> Result<Option<(i64, Vec<Event>)>, EtcdError> {
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).map_err(|e| EtcdError::Unreachable {
                endpoints: self.endpoint.clone(),
                message: format!("watching: {e}"),
            })?;
            if read == 0 {
                return Ok(None);
            }
            if line.trim().is_empty() {
                continue;
            }
            let message: WatchMessage =
                serde_json::from_str(&line).map_err(|e| EtcdError::Answer {
                    endpoint: self.endpoint.clone(),
                    path: "/v3/watch".into(),
                    message: format!("undecodable JSON ({e}): {}", excerpt(&line)),
                })?;
            if let Some(error) = message.error {
                return Err(EtcdError::Answer {
                    endpoint: self.endpoint.clone(),
                    path: "/v3/watch".into(),
                    message: error.to_string(),
                });
            }
            let Some(result) = message.result else { continue };
            if result.canceled {
                return Err(EtcdError::Answer {
                    endpoint: self.endpoint.clone(),
                    path: "/v3/watch".into(),
                    message: format!(
                        "the watch was cancelled: {}",
                        result.cancel_reason.unwrap_or_default()
                    ),
                });
            }
            if result.created && result.events.is_empty() {
                continue;
            }
            let events = result
                .events
                .into_iter()
                .map(|e| match e.kind.as_deref() {
                    Some("DELETE") => Event::Delete(KeyValue::from(e.kv).key),
                    _ => Event::Put(KeyValue::from(e.kv)),
                })
                .collect();
            return Ok(Some((result.header.revision, events)));
        }
    }
}

/// The first key after every key that starts with `prefix` (etcd's `range_end`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn encode(key: &str) -> String {
    encode_bytes(key.as_bytes())
}

fn encode_bytes(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// etcd encodes 64-bit numbers as JSON strings.
fn number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Text(String),
        Plain(i64),
    }
    match Number::deserialize(d)? {
        Number::Plain(n) => Ok(n),
        Number::Text(t) => t.parse().map_err(serde::de::Error::custom),
    }
}

fn optional_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    number(d).map(Some)
}

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default, deserialize_with = "number")]
    revision: i64,
}

#[derive(Deserialize)]
struct RawKeyValue {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "number")]
    mod_revision: i64,
}

impl From<RawKeyValue> for KeyValue {
    /// etcd's base64 is trusted; an undecodable value reads as empty.
    fn from(raw: RawKeyValue) -> KeyValue {
        let key = BASE64.decode(raw.key).unwrap_or_default();
        KeyValue {
            key: String::from_utf8_lossy(&key).into_owned(),
            value: BASE64.decode(raw.value).unwrap_or_default(),
            mod_revision: raw.mod_revision,
        }
    }
}

#[derive(Deserialize)]
struct RangeAnswer {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<RawKeyValue>,
}

#[derive(Deserialize)]
struct TxnAnswer {
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<TxnResponse>,
}

#[derive(Deserialize)]
struct TxnResponse {
    response_range: Option<RangeAnswer>,
}

#[derive(Deserialize)]
struct LeaseAnswer {
    #[serde(rename = "ID", default, deserialize_with = "optional_number")]
    id: Option<i64>,
    #[serde(rename = "TTL", default, deserialize_with = "optional_number")]
    ttl: Option<i64>,
}

#[derive(Deserialize)]
struct WatchMessage {
    result: Option<WatchResult>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WatchResult {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    canceled: bool,
    cancel_reason: Option<String>,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    kv: RawKeyValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_the_next_key() {
        assert_eq!(prefix_end("/tula/nodes/"), b"/tula/nodes0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn watch_messages_decode_as_etcd_3_4_sends_them() {
        let line = r#"{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"L3R1bGEvY29uZmln","mod_revision":"4","value":"eHg="}},{"type":"DELETE","kv":{"key":"L3R1bGEvbm9kZXMvYQ==","mod_revision":"4"}}]}}"#;
        let message: WatchMessage = serde_json::from_str(line).unwrap();
        let result = message.result.unwrap();
        assert_eq!(result.header.revision, 4);
        let kinds: Vec<Option<String>> = result.events.iter().map(|e| e.kind.clone()).collect();
        assert_eq!(kinds, vec![None, Some("DELETE".to_string())]);
        let kv = KeyValue::from(result.events.into_iter().next().unwrap().kv);
        assert_eq!((kv.key.as_str(), kv.value.as_slice(), kv.mod_revision), ("/tula/config", &b"xx"[..], 4));
    }

    #[test]
    fn an_expired_lease_has_no_ttl() {
        let alive: LeaseAnswer = serde_json::from_str(r#"{"ID":"30","TTL":"5"}"#).unwrap();
        let expired: LeaseAnswer = serde_json::from_str(r#"{"ID":"30"}"#).unwrap();
        assert_eq!((alive.id, alive.ttl), (Some(30), Some(5)));
        assert_eq!(expired.ttl, None);
    }
}
