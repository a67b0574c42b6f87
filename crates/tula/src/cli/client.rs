//! The operator commands' side of the REST API: where the daemon is (its
//! Unix socket on this host, or `--api URL` with `--token` from elsewhere),
//! `--json`, and requests whose errors come back as readable text.

use anyhow::{anyhow, Context};
use clap::Args;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use ureq::http::{Method, Response};
use ureq::Body;

/// Options every command that talks to the daemon takes.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The daemon's API over HTTP, e.g. http://lb1:9100 (changes need --token).
    /// Without it, the CLI talks to the daemon on this host over its socket.
    #[arg(long, env = "TULA_API", global = true, value_name = "URL")]
    pub api: Option<String>,
    /// The daemon's Unix socket on this host (root and its group may change things through it).
    #[arg(long, env = "TULA_SOCKET", default_value = tula_api::DEFAULT_SOCKET_PATH, global = true)]
    pub socket: PathBuf,
    /// Bearer token (api.token in the daemon's config), for --api: needed for changes,
    /// and for reads unless the API listens on loopback.
    #[arg(long, env = "TULA_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the daemon's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Change only if the running config is still revision N (sent as
    /// If-Match); otherwise nothing changes and the changes since are shown.
    #[arg(long, value_name = "N", global = true)]
    pub if_revision: Option<u64>,
}

/// A request body.
pub enum Payload {
    Json(Value),
    Toml(String),
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// Where the daemon is, for errors: the socket's path or the URL.
    reached_at: String,
    token: Option<String>,
    /// `If-Match` for every change.
    if_match: Option<String>,
}

impl Client {
    pub fn new(args: &ClientArgs) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        let (agent, base, reached_at) = match &args.api {
            Some(url) => {
                let base = url.trim_end_matches('/').to_string();
                (config.into(), base.clone(), base)
            }
            None => (
                tula_api::socket_agent(&args.socket, config),
                tula_api::SOCKET_BASE.to_string(),
                format!(
                    "its socket {} (--socket, TULA_SOCKET; or --api URL --token)",
                    args.socket.display()
                ),
            ),
        };
        Client {
            agent,
            base,
            reached_at,
            token: args.token.clone().filter(|t| !t.is_empty()),
            if_match: args.if_revision.map(|n| format!("\"{n}\"")),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(Method::GET, path, &[], None)
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(Method::DELETE, path, &[], None)
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, payload: Payload) -> anyhow::Result<T> {
        self.call(Method::POST, path, &[], Some(payload))
    }

    pub fn patch<T: DeserializeOwned>(&self, path: &str, payload: Payload) -> anyhow::Result<T> {
        self.call(Method::PATCH, path, &[], Some(payload))
    }

    /// One request; a non-2xx answer becomes an error with the daemon's message
    /// and its field errors, one per line.
    pub fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        payload: Option<Payload>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = if method == Method::GET || method == Method::DELETE {
            let mut request = match method {
                Method::DELETE => self.agent.delete(&url),
                _ => self.agent.get(&url),
            };
            request = request.query_pairs(query.iter().copied());
            if let Some(authorization) = &authorization {
                request = request.header("Authorization", authorization);
            }
            if method == Method::DELETE {
                request = request.header("Content-Type", "application/json");
            }
            request.call()
        } else {
            let mut request = match method {
                Method::PUT => self.agent.put(&url),
                Method::PATCH => self.agent.patch(&url),
                _ => self.agent.post(&url),
            };
            request = request.query_pairs(query.iter().copied());
            if let Some(authorization) = &authorization {
                request = request.header("Authorization", authorization);
            }
            // Changes go as JSON (TOML for a config): the daemon refuses other types.
            if let Some(if_match) = &self.if_match {
                request = request.header("If-Match", if_match);
            }
            match payload {
                None => request.content_type("application/json").send_empty(),
                Some(Payload::Json(value)) => request.send_json(value),
                Some(Payload::Toml(text)) => request.content_type("application/toml").send(text),
            }
        };
        let response = result.map_err(|e| {
            anyhow!(
                "cannot reach the tula daemon at {} ({e}); is `tula serve` running there?",
                self.reached_at
            )
        })?;
        read(response, &method, path)
    }
}

fn read<T: DeserializeOwned>(
    mut response: Response<Body>,
    method: &Method,
    path: &str,
) -> anyhow::Result<T> {
    let status = response.status();
    // No size limit: the status of 1,000 VIPs x 100 backends is tens of MB.
    let text = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()
        .with_context(|| format!("reading the daemon's answer to {method} {path}"))?;
    if status.is_success() {
        return serde_json::from_str(&text).with_context(|| {
            format!("the daemon's answer to {method} {path} is not the JSON expected")
        });
    }
    let Ok(body) = serde_json::from_str::<Value>(&text) else {
        return Err(anyhow!(
            "{method} {path}: the daemon answered {status}: {}",
            text.trim()
        ));
    };
    let mut message = body["error"]
        .as_str()
        .unwrap_or("the daemon gave no reason")
        .to_string();
    for error in body["errors"].as_array().into_iter().flatten() {
        let path = error["path"].as_str().unwrap_or_default();
        let detail = error["message"].as_str().unwrap_or_default();
        if path.is_empty() {
            message.push_str(&format!("\n  {detail}"));
        } else {
            message.push_str(&format!("\n  {path}: {detail}"));
        }
    }
    if status == 401 {
        message.push_str("\n  (pass the token with --token or TULA_TOKEN, or run the command on the balancer, over its socket)");
    }
    if status == 412 {
        message.push_str("\n  changes since:");
        for change in body["changes"].as_array().into_iter().flatten() {
            message.push_str(&format!(
                "\n  revision {} ({}):",
                change["number"],
                change["source"].as_str().unwrap_or_default()
            ));
            for line in change["summary"].as_array().into_iter().flatten() {
                message.push_str(&format!("\n    {}", line.as_str().unwrap_or_default()));
            }
        }
    }
    Err(anyhow!(message))
}

/// Prints `value` as indented JSON (the `--json` output).
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The `revision` of a change the daemon made, as "revision N".
pub fn revision_of(answer: &Value) -> String {
    let number = answer["revision"]["number"]
        .as_u64()
        .or_else(|| answer["number"].as_u64());
    match number {
        Some(number) => format!("revision {number}"),
        None => "no new revision".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    #[test]
    fn answers_larger_than_ureqs_default_limit_are_read_whole() {
        // 12 MB of JSON, above ureq's default 10 MB body limit.
        let body = format!("[{}0]", "1,".repeat(6_000_000));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        let length = body.len();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).unwrap();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n{body}"
            )
            .unwrap();
        });
        let client = Client::new(&ClientArgs {
            api: Some(api),
            socket: PathBuf::from(tula_api::DEFAULT_SOCKET_PATH),
            token: None,
            json: false,
            if_revision: None,
        });
        let numbers: Vec<u8> = client.get("/api/status").unwrap();
        assert_eq!(numbers.len(), 6_000_001);
        server.join().unwrap();
    }
}
