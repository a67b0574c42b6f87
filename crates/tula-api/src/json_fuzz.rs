//! The API's JSON decoding (`parse_json`) on bodies nobody meant to send:
//! arbitrary bytes, and valid VIP, backend and config bodies (the config
//! example, as JSON) cut, spliced and retyped at random (proptest). It never
//! panics; a body it refuses gets a 400 whose message says what is wrong,
//! and a wrong value is named by its path.

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tula_config::{Backend, Config, Vip};

use crate::error::parse_json;

const EXAMPLE: &str = include_str!("../../../docs/tula.example.toml");

/// Valid bodies of every kind the API decodes.
fn bodies() -> Vec<String> {
    let config = Config::from_toml_str(EXAMPLE).expect("the example config decodes");
    let vip = &config.vips[0];
    vec![
        serde_json::to_string(&config).unwrap(),
        serde_json::to_string(vip).unwrap(),
        serde_json::to_string(&vip.backends[0]).unwrap(),
        r#"{"weight": 5, "state": "drain"}"#.to_string(),
    ]
}

/// Decodes `body` as `T` and checks the outcome: no panic (the caller's
/// proptest would report it), and a refusal is a 400 that says what is wrong.
fn check<T: DeserializeOwned>(body: &[u8]) {
    if let Err(error) = parse_json::<T>(body) {
        assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST, "{}", error.message);
        assert!(error.message.starts_with("the "), "says what is wrong: {}", error.message);
        for problem in &error.errors {
            assert!(!problem.message.is_empty());
            assert!(error.message.contains(&problem.path), "names the path {}: {}", problem.path, error.message);
        }
    }
}

fn check_all(body: &[u8]) {
    check::<Config>(body);
    check::<Vip>(body);
    check::<Backend>(body);
    check::<Map<String, Value>>(body);
}

fn floor_char(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// A valid body with one random edit: a cut, a duplicated span, or a token put in.
fn edited() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "", "\"", "{", "}", "[", "]", ",", ":", "null", "0", "-1", "1e999", "65536", "18446744073709551616",
        "true", "\"x\"", "\"203.0.113.10\"", "\"300.1.1.1\"", "{\"weight\": -3}", "\"\\ud800\"", "é",
    ]);
    let bodies = bodies();
    (0..bodies.len(), any::<prop::sample::Index>(), 0..80usize, tokens, 0..3u8).prop_map(
        move |(which, at, len, token, kind)| {
            let body = &bodies[which];
            let at = floor_char(body, at.index(body.len() + 1));
            let end = floor_char(body, (at + len).min(body.len()));
            match kind {
                0 => format!("{}{}", &body[..at], &body[end..]),
                1 => format!("{}{}{}", &body[..end], &body[at..end], &body[end..]),
                _ => format!("{}{token}{}", &body[..at], &body[end..]),
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..300)) {
        check_all(&body);
    }

    #[test]
    fn valid_bodies_edited_at_random_never_panic_and_name_the_problem(body in edited()) {
        check_all(body.as_bytes());
    }
}

#[test]
fn the_unedited_bodies_decode() {
    let bodies = bodies();
    parse_json::<Config>(bodies[0].as_bytes()).unwrap();
    parse_json::<Vip>(bodies[1].as_bytes()).unwrap();
    parse_json::<Backend>(bodies[2].as_bytes()).unwrap();
    parse_json::<Map<String, Value>>(bodies[3].as_bytes()).unwrap();
}

#[test]
fn a_wrong_value_is_named_by_its_path() {
    let error = parse_json::<Backend>(br#"{"address": "198.18.3.2", "weight": "heavy"}"#).unwrap_err();
    assert!(error.message.contains("weight"), "{}", error.message);
    assert_eq!(error.errors[0].path, "weight");
}
