//! The registry: versions and the latest-version rule, re-registration, the input schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use duraflow_dag::{Registry, RegistryError, Step, Template};
use serde_json::json;

fn version(v: &str) -> Template {
    Template::builder("ns", "t", v)
        .step(Step::new("a", "h"))
        .build()
}

#[test]
fn the_latest_version_is_the_highest_semver() {
    let mut reg = Registry::new(["h"]);
    for v in ["1.9.0", "1.10.0", "1.2.3"] {
        reg.register(version(v)).unwrap();
    }
    assert_eq!(
        reg.get("ns", "t", None).unwrap().template().version,
        "1.10.0"
    );
    assert_eq!(
        reg.get("ns", "t", Some("1.2.3"))
            .unwrap()
            .template()
            .version,
        "1.2.3"
    );
    assert_eq!(reg.versions("ns", "t"), ["1.9.0", "1.10.0", "1.2.3"]);
}

#[test]
fn without_semver_the_latest_is_the_most_recently_registered() {
    let mut reg = Registry::new(["h"]);
    for v in ["b", "2.0.0", "a"] {
        reg.register(version(v)).unwrap();
    }
    assert_eq!(reg.get("ns", "t", None).unwrap().template().version, "a");
}

#[test]
fn same_content_again_is_a_no_op_and_different_content_a_conflict() {
    let mut reg = Registry::new(["h", "other"]);
    let first = reg.register(version("1.0.0")).unwrap();
    let again = reg.register(version("1.0.0")).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    let changed = Template::builder("ns", "t", "1.0.0")
        .step(Step::new("a", "other"))
        .build();
    let e = reg.register(changed).unwrap_err();
    assert!(matches!(e, RegistryError::Conflict { .. }), "{e}");
    assert!(e.to_string().contains("ns/t@1.0.0"), "{e}");
    assert_eq!(reg.versions("ns", "t"), ["1.0.0"]);
}

#[test]
fn a_run_keeps_the_template_it_started_with() {
    let mut reg = Registry::new(["h"]);
    reg.register(version("1.0.0")).unwrap();
    let run = reg.start("ns", "t", None, &json!(null)).unwrap();
    reg.register(version("2.0.0")).unwrap();
    assert_eq!(run.template().version, "1.0.0");
    assert_eq!(
        reg.start("ns", "t", None, &json!(null))
            .unwrap()
            .template()
            .version,
        "2.0.0"
    );
}

#[test]
fn unknown_names_and_versions_are_not_found() {
    let mut reg = Registry::new(["h"]);
    reg.register(version("1.0.0")).unwrap();
    let e = reg.get("ns", "t", Some("9")).unwrap_err();
    assert_eq!(e.to_string(), "no template ns/t@9 is registered");
    let e = reg.get("ns", "nope", None).unwrap_err();
    assert_eq!(e.to_string(), "no template ns/nope is registered");
}

#[test]
fn invalid_templates_are_refused_with_their_errors() {
    let mut reg = Registry::new(Vec::<String>::new());
    let e = reg.register(version("1")).unwrap_err();
    assert!(matches!(e, RegistryError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("handler `h`"), "{e}");
    reg.add_handler("h");
    reg.register(version("1")).unwrap();
}

#[test]
fn the_input_schema_is_compiled_at_registration_and_checked_at_start() {
    let mut reg = Registry::new(["h"]);
    let bad = Template::builder("ns", "bad", "1")
        .input_schema(json!({"type": 12}))
        .step(Step::new("a", "h"))
        .build();
    let e = reg.register(bad).unwrap_err();
    assert!(matches!(e, RegistryError::InvalidInputSchema { .. }), "{e}");
    let t = Template::builder("ns", "typed", "1")
        .input_schema(json!({
            "type": "object",
            "required": ["n"],
            "properties": {"n": {"type": "integer", "minimum": 1}}
        }))
        .step(Step::new("a", "h"))
        .build();
    reg.register(t).unwrap();
    reg.start("ns", "typed", None, &json!({"n": 2})).unwrap();
    let e = reg
        .start("ns", "typed", None, &json!({"n": 0}))
        .unwrap_err();
    let RegistryError::InputRejected { errors, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("at `/n`"), "{errors:?}");
    let e = reg.start("ns", "typed", None, &json!({})).unwrap_err();
    assert!(e.to_string().contains("ns/typed@1"), "{e}");
}
