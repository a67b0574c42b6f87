//! The operator commands' side of the REST API: where the daemon is, the
//! token, `--json`, and requests whose errors come back as readable text.

use anyhow::{anyhow, Context};
use clap::Args;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;
use ureq::http::{Method, Response};
use ureq::Body;

/// Options every command that talks to the daemon takes.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The daemon's API.
    #[arg(
        long,
        env = "TULA_API",
        default_value = "http://127.0.0.1:9100",
        global = true
    )]
    pub api: String,
    /// Bearer token (api.token in the daemon's config); needed unless the API listens on loopback.
    #[arg(long, env = "TULA_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the daemon's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A request body.
pub enum Payload {
    Json(Value),
    Toml(String),
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(args: &ClientArgs) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client {
            agent,
            base: args.api.trim_end_matches('/').to_string(),
            token: args.token.clone().filter(|t| !t.is_empty()),
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
            match payload {
                None => request.send_empty(),
                Some(Payload::Json(value)) => request.send_json(value),
                Some(Payload::Toml(text)) => request.content_type("application/toml").send(text),
            }
        };
        let response = result.map_err(|e| {
            anyhow!(
                "cannot reach the tula daemon at {} ({e}); is `tula serve` running there? (--api or TULA_API)",
                self.base
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
    let text = response
        .body_mut()
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
        message.push_str("\n  (pass the token with --token or TULA_TOKEN)");
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
