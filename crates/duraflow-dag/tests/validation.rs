//! One test per validation rule: each broken rule is reported, naming the template and the
//! step, and a valid template passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use duraflow_dag::{validate, Dag, InputRef, Step, Template, ValidationError};

const ID: &str = "ns/t@1";

fn template(steps: Vec<Step>) -> Template {
    steps
        .into_iter()
        .fold(Template::builder("ns", "t", "1"), |b, s| b.step(s))
        .build()
}

/// Validates with every handler the steps use known, plus `extra`.
fn check(steps: Vec<Step>) -> Result<Dag, Vec<ValidationError>> {
    let t = template(steps);
    let mut handlers: Vec<String> = t.steps.iter().map(|s| s.handler.clone()).collect();
    handlers.push("worker".into());
    validate(&t, &handlers).map_err(|e| {
        assert_eq!(e.template.to_string(), ID);
        for err in &e.errors {
            assert!(err.to_string().contains(ID), "{err}");
        }
        assert!(
            e.to_string().starts_with("template ns/t@1 is invalid:"),
            "{e}"
        );
        e.errors
    })
}

fn only(steps: Vec<Step>) -> ValidationError {
    let errors = check(steps).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

fn step(name: &str) -> Step {
    Step::new(name, format!("h_{name}"))
}

#[test]
fn a_valid_template_passes_and_yields_its_graph() {
    let dag = check(vec![step("a"), step("b").depends_on(["a"])]).unwrap();
    assert_eq!(dag.len(), 2);
    assert_eq!(dag.children(dag.id("a").unwrap()), [dag.id("b").unwrap()]);
}

#[test]
fn no_steps() {
    let e = only(vec![]);
    assert!(matches!(e, ValidationError::NoSteps { .. }), "{e}");
}

#[test]
fn invalid_step_names() {
    for name in ["", "a.b", "w[0]"] {
        let e = only(vec![step(name)]);
        assert!(
            matches!(&e, ValidationError::InvalidStepName { step, .. } if step == name),
            "{e}"
        );
    }
}

#[test]
fn duplicate_step() {
    let e = only(vec![step("a"), step("a")]);
    assert!(
        matches!(&e, ValidationError::DuplicateStep { step, .. } if step == "a"),
        "{e}"
    );
    assert!(
        e.to_string().contains("`a` is declared more than once"),
        "{e}"
    );
}

#[test]
fn unknown_dependency() {
    let e = only(vec![step("a").depends_on(["nope"])]);
    assert!(
        matches!(&e, ValidationError::UnknownDependency { step, dependency, .. } if step == "a" && dependency == "nope"),
        "{e}"
    );
}

#[test]
fn cycle_prints_its_path() {
    let e = only(vec![
        step("start"),
        step("a").depends_on(["start", "c"]),
        step("b").depends_on(["a"]),
        step("c").depends_on(["b"]),
    ]);
    let ValidationError::Cycle { path, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(path.first(), path.last());
    assert_eq!(path.len(), 4);
    let text = e.to_string();
    assert!(
        ["a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"]
            .iter()
            .any(|p| text.contains(p)),
        "{text}"
    );
    let e = only(vec![step("self").depends_on(["self"])]);
    assert!(e.to_string().contains("self -> self"), "{e}");
}

#[test]
fn missing_handler_and_missing_worker() {
    let t = template(vec![step("a"), step("b").batch("pack", 0)]);
    let errors = validate(&t, ["h_a"]).unwrap_err().errors;
    assert_eq!(errors.len(), 2, "{errors:?}");
    for (err, handler) in errors.iter().zip(["h_b", "pack"]) {
        assert!(
            matches!(err, ValidationError::MissingHandler { step, handler: h, .. } if step == "b" && h == handler),
            "{err}"
        );
    }
}

#[test]
fn decision_target_not_downstream() {
    let errors = check(vec![
        step("d").decision(["x", "ghost"]),
        step("x").depends_on(["d"]),
        step("y"),
    ])
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(&errors[0], ValidationError::DecisionTargetNotDownstream { step, target, .. } if step == "d" && target == "ghost"),
        "{}",
        errors[0]
    );
    let e = only(vec![step("d").decision(["y"]), step("y")]);
    assert!(
        e.to_string()
            .contains("`y` is not a step that depends on `d`"),
        "{e}"
    );
}

#[test]
fn a_step_depending_on_a_decision_without_being_a_target_is_unreachable() {
    let errors = check(vec![
        step("d").decision(["x"]),
        step("x").depends_on(["d"]),
        step("stray").depends_on(["d"]),
        step("after").depends_on(["stray"]),
        step("joined").depends_on(["stray", "x"]),
    ])
    .unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        matches!(&errors[0], ValidationError::NotADecisionTarget { step, decision, .. } if step == "stray" && decision == "d"),
        "{}",
        errors[0]
    );
    // `after` only follows `stray`; `joined` also follows `x`, so it can run.
    assert!(
        matches!(&errors[1], ValidationError::Unreachable { step, .. } if step == "after"),
        "{}",
        errors[1]
    );
    assert!(
        errors[1].to_string().contains("unreachable"),
        "{}",
        errors[1]
    );
}

#[test]
fn convergence_needs_exactly_one_batch() {
    let e = only(vec![step("a"), step("c").depends_on(["a"]).convergence()]);
    assert!(
        matches!(&e, ValidationError::ConvergenceNeedsOneBatch { step, batches: 0, .. } if step == "c"),
        "{e}"
    );
    let e = only(vec![
        step("b1").batch("worker", 0),
        step("b2").batch("worker", 0),
        step("c").depends_on(["b1", "b2"]).convergence(),
    ]);
    assert!(
        matches!(
            &e,
            ValidationError::ConvergenceNeedsOneBatch { batches: 2, .. }
        ),
        "{e}"
    );
    check(vec![
        step("b").batch("worker", 2),
        step("c").depends_on(["b"]).convergence(),
    ])
    .unwrap();
}

#[test]
fn inputs_read_only_upstream_results() {
    check(vec![
        step("a"),
        step("b").depends_on(["a"]),
        step("c")
            .depends_on(["b"])
            .input("x", InputRef::step_result("a", "x"))
            .input("y", InputRef::input("y")),
    ])
    .unwrap();
    for source in ["c", "b", "ghost"] {
        let e = only(vec![
            step("a"),
            step("b"),
            step("c")
                .depends_on(["a"])
                .input("x", InputRef::step_result(source, "")),
        ]);
        assert!(
            matches!(&e, ValidationError::InputNotUpstream { step, field, source_step, .. } if step == "c" && field == "x" && source_step == source),
            "{e}"
        );
    }
}

#[test]
fn every_broken_rule_is_reported_at_once() {
    let t = template(vec![step("a"), step("a"), step("b").depends_on(["zzz"])]);
    let errors = validate(&t, ["h_b"]).unwrap_err().errors;
    assert_eq!(errors.len(), 4, "{errors:?}"); // two missing handlers, a duplicate, an unknown
}

#[test]
fn dag_from_template_checks_the_structure_only() {
    let t = template(vec![step("a"), step("b").depends_on(["a"])]);
    assert_eq!(Dag::from_template(&t).unwrap().len(), 2);
    let t = template(vec![step("a").depends_on(["a"])]);
    assert!(matches!(
        Dag::from_template(&t).unwrap_err().errors[0],
        ValidationError::Cycle { .. }
    ));
}
