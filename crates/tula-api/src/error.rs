//! The API's one error shape: `{"error": "...", "errors": [{"path": ..., "message": ...}]}`
//! with the status code that says whose fault it was.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use tula_config::{ConfigError, ConfigErrors};
use tula_control::ControlError;

use crate::revisions::revision_record;
use tula_client::Revision;

/// A failed request: status, a sentence naming the object, and field errors if any.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<ConfigError>,
    /// More keys of the body, e.g. a conflict's `running_revision` and `changes`.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            errors: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 422 with every problem of a config that does not validate.
    pub fn invalid(errors: ConfigErrors) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "the config is invalid".to_string(),
            errors: errors.errors,
            extra: serde_json::Map::new(),
        }
    }

    /// 400 for a TOML body that does not decode, with each problem's path.
    pub fn undecodable(errors: ConfigErrors) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "the TOML body does not decode to a config".to_string(),
            errors: errors.errors,
            extra: serde_json::Map::new(),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> ApiError {
        match error {
            ControlError::Invalid(errors) => ApiError::invalid(errors),
            ControlError::NoSuchRevision(_)
            | ControlError::NoSuchVip(_)
            | ControlError::NoSuchBackend { .. } => ApiError::not_found(error.to_string()),
            // The client's change met a newer revision: 412 with what changed since.
            ControlError::Conflict {
                running, ref since, ..
            } => {
                let changes: Vec<Revision> =
                    since.iter().cloned().map(revision_record).collect();
                let mut api_error =
                    ApiError::new(StatusCode::PRECONDITION_FAILED, error.to_string());
                api_error
                    .extra
                    .insert("running_revision".into(), running.into());
                api_error.extra.insert(
                    "changes".into(),
                    serde_json::to_value(changes).unwrap_or_default(),
                );
                api_error
            }
            // Out of VIP or backend ids: the request asks for more than the data plane holds.
            ControlError::Capacity(ref capacity) => {
                let mut api_error = ApiError::conflict(error.to_string());
                api_error
                    .extra
                    .insert("limit".into(), capacity.kind.setting().into());
                api_error
                    .extra
                    .insert("limit_value".into(), capacity.limit.into());
                api_error
            }
            ControlError::Refused(_) => ApiError::conflict(error.to_string()),
            ControlError::Stopped | ControlError::ClusterUnavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message, "errors": self.errors });
        if let Some(object) = body.as_object_mut() {
            object.extend(self.extra);
        }
        (self.status, Json(body)).into_response()
    }
}

/// Decodes a JSON body, naming the offending field on a wrong type or unknown key.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| json_error(&error.path().to_string(), error.into_inner()))?;
    deserializer.end().map_err(|error| json_error(".", error))?;
    Ok(value)
}

fn json_error(path: &str, error: serde_json::Error) -> ApiError {
    if !error.is_data() {
        return ApiError::bad_request(format!("the body is not valid JSON: {error}"));
    }
    let path = if path == "." { "" } else { path };
    let message = if path.is_empty() {
        format!("the JSON body has a wrong value: {error}")
    } else {
        format!("the JSON body has a wrong value at {path}: {error}")
    };
    let mut api_error = ApiError::bad_request(message);
    api_error
        .errors
        .push(ConfigError::new(path, error.to_string()));
    api_error
}

/// Decodes a JSON value already parsed (e.g. after a merge patch), naming the offending field.
pub fn from_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value)
        .map_err(|error| json_error(&error.path().to_string(), error.into_inner()))
}

/// `text` from a client with its control characters escaped (`\n`, `\u{1b}`),
/// so that logging or recording it cannot start a forged log line or move
/// a terminal's cursor. Other characters, non-ASCII included, stay as sent.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            super::printable("deploy 42\nINFO forged\r\u{1b}[2J für"),
            "deploy 42\\nINFO forged\\r\\u{1b}[2J für"
        );
    }
}
