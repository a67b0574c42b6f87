//! `/api/vips...`: VIPs and their backends. Reads use the running snapshot
//! (its indexes and its JSON, encoded once per revision). Each change is an
//! edit of the VIP it names, sent to the control plane's writer with the
//! request's `If-Match`, so it passes the same validation as a file.

use std::net::IpAddr;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tula_config::{Backend, BackendState, Config, Vip};

use crate::error::{from_json_value, parse_json, ApiError};
use crate::precondition::{parse_revision_tag, IfMatch};
use crate::state::AppState;

type Reply = Result<Json<Value>, ApiError>;

/// Every VIP: the snapshot's JSON, shared by all requests of a revision,
/// gzip-compressed (once per revision) for clients that accept it. A poller
/// sending the revision's `ETag` back in `If-None-Match` gets a bodiless 304.
pub(crate) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snapshot = state.snapshot();
    let etag = HeaderValue::from_str(&format!("\"{}\"", snapshot.revision()))
        .expect("a revision number is a valid header value");
    let mut response = if names_revision(&headers, snapshot.revision()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(&headers) {
        // Compressing 5.6 MB takes a while the first time: not on a runtime thread.
        let gzip = tokio::task::spawn_blocking(move || snapshot.vips_gzip())
            .await
            .expect("compressing the VIPs' JSON does not panic");
        let mut response = shared_body(gzip);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        json_text(snapshot.vips_json())
    };
    let headers = response.headers_mut();
    headers.insert(ETAG, etag);
    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    response
}

/// Whether `If-None-Match` lists the ETag of `revision` (or is `*`).
fn names_revision(headers: &HeaderMap, revision: u64) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .any(|tag| match parse_revision_tag(tag) {
            Some(Some(tagged)) => tagged == revision,
            Some(None) => true,
            None => false,
        })
}

/// Whether `Accept-Encoding` allows gzip: named (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|param| {
                let param = param.trim();
                param
                    .strip_prefix("q=")
                    .or_else(|| param.strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vip>, ApiError> {
    let snapshot = state.snapshot();
    Ok(Json(find_vip(snapshot.config(), &name)?.clone()))
}

/// A response whose body is JSON text encoded once and shared.
pub(crate) fn json_text(text: Arc<str>) -> Response {
    let mut response = shared_body(text);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A response whose body is bytes made once and shared, not copied.
fn shared_body<T: AsRef<[u8]> + ?Sized + Send + Sync + 'static>(bytes: Arc<T>) -> Response {
    struct Shared<T: ?Sized>(Arc<T>);
    impl<T: AsRef<[u8]> + ?Sized> AsRef<[u8]> for Shared<T> {
        fn as_ref(&self) -> &[u8] {
            (*self.0).as_ref()
        }
    }
    Bytes::from_owner(Shared(bytes)).into_response()
}

pub(crate) async fn create(
    State(state): State<AppState>,
    IfMatch(based_on): IfMatch,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let vip: Vip = parse_json(&body)?;
    let source = format!("api: add vips[{}]", vip.name);
    let scope = Some(vip.name.clone());
    let (revision, vip) = state
        .edit_scoped(source, based_on, scope, move |config| {
            if config.vip(&vip.name).is_some() {
                return Err(ApiError::conflict(format!(
                    "VIP {:?} already exists",
                    vip.name
                )));
            }
            config.vips.push(vip.clone());
            Ok(vip.clone())
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "revision": revision, "vip": vip })),
    ))
}

/// PUT: the body is the whole VIP (absent keys take their defaults).
pub(crate) async fn replace(
    State(state): State<AppState>,
    IfMatch(based_on): IfMatch,
    Path(name): Path<String>,
    body: Bytes,
) -> Reply {
    let vip: Vip = parse_json(&body)?;
    same_name(&name, &vip.name)?;
    let source = format!("api: replace vips[{name}]");
    let scope = Some(name.clone());
    let (revision, vip) = state
        .edit_scoped(source, based_on, scope, move |config| {
            *find_vip_mut(config, &name)? = vip.clone();
            Ok(vip.clone())
        })
        .await?;
    Ok(Json(json!({ "revision": revision, "vip": vip })))
}

/// PATCH: a JSON merge patch (RFC 7386) of the VIP, e.g. `{"scheduler": "source-hash"}`.
pub(crate) async fn update(
    State(state): State<AppState>,
    IfMatch(based_on): IfMatch,
    Path(name): Path<String>,
    body: Bytes,
) -> Reply {
    let patch: Map<String, Value> = parse_json(&body)?;
    let source = format!("api: set vips[{name}] {}", patch_text(&patch));
    let scope = Some(name.clone());
    let (revision, vip) = state
        .edit_scoped(source, based_on, scope, move |config| {
            let vip = find_vip_mut(config, &name)?;
            let patched: Vip = patched(&*vip, patch.clone())?;
            same_name(&name, &patched.name)?;
            *vip = patched.clone();
            Ok(patched)
        })
        .await?;
    Ok(Json(json!({ "revision": revision, "vip": vip })))
}

pub(crate) async fn remove(
    State(state): State<AppState>,
    IfMatch(based_on): IfMatch,
    Path(name): Path<String>,
) -> Reply {
    let source = format!("api: remove vips[{name}]");
    let scope = Some(name.clone());
    let (revision, ()) = state
        .edit_scoped(source, based_on, scope, move |config| {
            find_vip(config, &name)?;
            config.vips.retain(|v| v.name != name);
            Ok(())
        })
        .await?;
    Ok(Json(json!({ "revision": revision })))
}

pub(crate) async fn list_backends(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Backend>>, ApiError> {
    let snapshot = state.snapshot();
    Ok(Json(find_vip(snapshot.config(), &name)?.backends.clone()))
}

pub(crate) async fn show_backend(
    State(state): State<AppState>,
    Path((name, address)): Path<(String, String)>,
) -> Result<Json<Backend>, ApiError> {
    let address = parse_address(&address)?;
    let snapshot = state.snapshot();
    let vip = find_vip(snapshot.config(), &name)?;
    match snapshot.backend(&name, address) {
        Some(backend) => Ok(Json(backend.clone())),
        None => Err(no_backend(vip, address)),
    }
}

pub(crate) async fn add_backend(
    State(state): State<AppState>,
    IfMatch(based_on): IfMatch,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let backend: Backend = parse_json(&body)?;
    let source = format!("api: add vips[{name}].backends[{}]", backend.address);
    let scope = Some(name.clone());
    let (revision, backend) = state
        .edit_scoped(source, based_on, scope, move |config| {
            let vip = find_vip_mut(config, &name)?;
            if vip.backends.iter().any(|b| b.address == backend.address) {
                return Err(ApiError::conflict(format!(
                    "VIP {name:?} already has backend {}",
                    backend.address
                )));
            }
            vip.backends.push(backend.clone());
            Ok(backend.clone())
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "revision": revision, "backend": backend })),
    ))
}

/// PATCH: a JSON merge patch of the backend, e.g. `{"weight": 3}` or `{"state": "disabled"}`.
pub(crate) async fn update_backend(
    State(state): State<AppState>,
    IfMatch(based_on): IfMatch,
    Path((name, address)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let address = parse_address(&address)?;
    let patch: Map<String, Value> = parse_json(&body)?;
    let source = format!(
        "api: set vips[{name}].backends[{address}] {}",
        patch_text(&patch)
    );
    let scope = Some(name.clone());
    let (revision, backend) = state
        .edit_scoped(source, based_on, scope, move |config| {
            let vip = find_vip_mut(config, &name)?;
            let index = backend_index(vip, address)?;
            let patched: Backend = patched(&vip.backends[index], patch.clone())?;
            if patched.address != address {
                return Err(ApiError::bad_request(format!(
                    "a backend's address cannot change (the path says {address}, the body {}): add the new backend and remove this one",
                    patched.address
                )));
            }
            vip.backends[index] = patched.clone();
            Ok(patched)
        })
        .await?;
    Ok(Json(json!({ "revision": revision, "backend": backend })))
}

pub(crate) async fn remove_backend(
    State(state): State<AppState>,
    IfMatch(based_on): IfMatch,
    Path((name, address)): Path<(String, String)>,
) -> Reply {
    let address = parse_address(&address)?;
    let source = format!("api: remove vips[{name}].backends[{address}]");
    let scope = Some(name.clone());
    let (revision, ()) = state
        .edit_scoped(source, based_on, scope, move |config| {
            let vip = find_vip_mut(config, &name)?;
            let index = backend_index(vip, address)?;
            vip.backends.remove(index);
            Ok(())
        })
        .await?;
    Ok(Json(json!({ "revision": revision })))
}

/// Takes the backend out of new flows; its existing flows continue.
pub(crate) async fn drain_backend(
    State(state): State<AppState>,
    IfMatch(based_on): IfMatch,
    Path((name, address)): Path<(String, String)>,
) -> Reply {
    let address = parse_address(&address)?;
    let source = format!("api: drain vips[{name}].backends[{address}]");
    let scope = Some(name.clone());
    let (revision, backend) = state
        .edit_scoped(source, based_on, scope, move |config| {
            let vip = find_vip_mut(config, &name)?;
            let index = backend_index(vip, address)?;
            vip.backends[index].state = BackendState::Drain;
            Ok(vip.backends[index].clone())
        })
        .await?;
    Ok(Json(json!({ "revision": revision, "backend": backend })))
}

pub(crate) fn find_vip<'a>(config: &'a Config, name: &str) -> Result<&'a Vip, ApiError> {
    config.vip(name).ok_or_else(|| no_vip(name))
}

fn find_vip_mut<'a>(config: &'a mut Config, name: &str) -> Result<&'a mut Vip, ApiError> {
    config
        .vips
        .iter_mut()
        .find(|v| v.name == name)
        .ok_or_else(|| no_vip(name))
}

fn no_vip(name: &str) -> ApiError {
    ApiError::not_found(format!("no VIP {name:?}"))
}

pub(crate) fn backend_index(vip: &Vip, address: IpAddr) -> Result<usize, ApiError> {
    vip.backends
        .iter()
        .position(|b| b.address == address)
        .ok_or_else(|| no_backend(vip, address))
}

fn no_backend(vip: &Vip, address: IpAddr) -> ApiError {
    ApiError::not_found(format!("VIP {:?} has no backend {address}", vip.name))
}

pub(crate) fn parse_address(text: &str) -> Result<IpAddr, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{text:?} is not an IP address")))
}

fn same_name(path_name: &str, body_name: &str) -> Result<(), ApiError> {
    if path_name == body_name {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "a VIP's name cannot change (the path says {path_name:?}, the body {body_name:?}): add a new VIP and remove this one"
        )))
    }
}

/// `current` with a JSON merge patch applied, decoded again (so wrong types name their key).
fn patched<T: serde::Serialize + serde::de::DeserializeOwned>(
    current: &T,
    patch: Map<String, Value>,
) -> Result<T, ApiError> {
    let mut value = serde_json::to_value(current).map_err(|e| ApiError::internal(e.to_string()))?;
    merge_patch(&mut value, Value::Object(patch));
    from_json_value(value)
}

/// RFC 7386: objects merge key by key, `null` removes a key, anything else replaces.
fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(&key);
        } else {
            merge_patch(target.entry(key).or_insert(Value::Null), value);
        }
    }
}

/// `weight=3 state="drain"`: a patch as it appears in a revision's source.
fn patch_text(patch: &Map<String, Value>) -> String {
    let pairs: Vec<String> = patch.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn patch_reports_the_key_with_a_wrong_type() {
        let backend = Backend {
            address: "198.18.11.2".parse().unwrap(),
            port: None,
            weight: 1,
            state: BackendState::Active,
        };
        let patch = json!({"weight": "heavy"}).as_object().unwrap().clone();
        let error = patched(&backend, patch).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.errors[0].path, "weight");
        assert!(
            error.message.contains("invalid type: string \"heavy\""),
            "{}",
            error.message
        );
    }

    fn headers(name: axum::http::HeaderName, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn gzip_is_accepted_when_named_or_starred_without_q_0() {
        assert!(accepts_gzip(&headers(ACCEPT_ENCODING, "gzip")));
        assert!(accepts_gzip(&headers(ACCEPT_ENCODING, "br, GZIP;q=0.5")));
        assert!(accepts_gzip(&headers(ACCEPT_ENCODING, "*")));
        assert!(!accepts_gzip(&headers(ACCEPT_ENCODING, "gzip;q=0")));
        assert!(!accepts_gzip(&headers(ACCEPT_ENCODING, "identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_names_the_revision_in_a_list_or_with_a_star() {
        assert!(names_revision(&headers(IF_NONE_MATCH, "\"3\""), 3));
        assert!(names_revision(&headers(IF_NONE_MATCH, "\"1\", W/\"3\""), 3));
        assert!(names_revision(&headers(IF_NONE_MATCH, "*"), 3));
        assert!(!names_revision(&headers(IF_NONE_MATCH, "\"2\""), 3));
        assert!(!names_revision(&HeaderMap::new(), 3));
    }
}
