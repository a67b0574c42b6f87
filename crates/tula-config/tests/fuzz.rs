//! The config parser on input nobody meant to write: arbitrary text, and the
//! example config cut, spliced and retyped at random (proptest). It never
//! panics; a config it refuses comes back as problems that each say what is
//! wrong (a message) and, when the problem is inside a table or value,
//! where (a path shown with the message); one it accepts validates without
//! panicking and writes back out as TOML that decodes to the same config.

use proptest::prelude::*;
use tula_config::{Config, HostFacts};

const EXAMPLE: &str = include_str!("../../../docs/tula.example.toml");

/// What every outcome of decoding must satisfy.
fn check(text: &str) {
    match Config::from_toml_str(text) {
        Ok(config) => {
            let _ = config.validate(&HostFacts::default());
            let again = Config::from_toml_str(&config.to_toml_string())
                .unwrap_or_else(|e| panic!("its own TOML does not decode: {e}\n{text}"));
            assert_eq!(again, config, "round trip of\n{text}");
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an error without problems for\n{text}");
            for error in errors.iter() {
                assert!(
                    !error.message.trim().is_empty(),
                    "a problem without a message for\n{text}"
                );
                assert!(
                    error.to_string().contains(&error.message)
                        && error.to_string().contains(&error.path),
                    "the problem's text names its path and message: {error}"
                );
            }
        }
    }
}

/// A random edit of `text`: a cut, a duplicated span, an inserted token or a retyped value.
fn edited() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "",
        "\"",
        "[",
        "]",
        "{",
        "}",
        "=",
        "\n",
        "[[vip]]\n",
        "0",
        "-1",
        "65536",
        "99999999999999999999",
        "1.5",
        "true",
        "\"203.0.113.10\"",
        "\"300.1.1.1\"",
        "\"\"",
        "\"10s\"",
        "\"-5s\"",
        "[]",
        "{}",
        "weight = 1001\n",
        "port = 0\n",
        "name = \"web\"\n",
        "#",
        "'",
        "\u{0}",
        "é",
        "\"\\u00\"",
    ]);
    (
        0..EXAMPLE.len(),
        0..64usize,
        tokens,
        0..4u8,
        0..EXAMPLE.len(),
    )
        .prop_map(|(at, len, token, kind, other)| {
            let at = floor_char(EXAMPLE, at);
            let end = floor_char(EXAMPLE, (at + len).min(EXAMPLE.len()));
            let other = floor_char(EXAMPLE, other);
            match kind {
                0 => format!("{}{}", &EXAMPLE[..at], &EXAMPLE[end..]),
                1 => format!(
                    "{}{}{}",
                    &EXAMPLE[..end],
                    &EXAMPLE[at..end],
                    &EXAMPLE[end..]
                ),
                2 => format!("{}{token}{}", &EXAMPLE[..at], &EXAMPLE[at..]),
                _ => format!(
                    "{}{token}{}",
                    &EXAMPLE[..at.min(other)],
                    &EXAMPLE[at.max(other)..]
                ),
            }
        })
}

fn floor_char(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_and_every_problem_is_named(text in ".{0,400}") {
        check(&text);
    }

    #[test]
    fn the_example_edited_at_random_never_panics_and_every_problem_is_named(text in edited()) {
        check(&text);
    }

    #[test]
    fn edits_of_edits_never_panic(a in edited(), cut in 0..400usize) {
        let cut = floor_char(&a, cut.min(a.len()));
        check(&a[..cut]);
    }
}

#[test]
fn the_example_itself_passes_the_check() {
    check(EXAMPLE);
    assert!(Config::from_toml_str(EXAMPLE).is_ok());
}
