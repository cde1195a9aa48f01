//! The Rust builder for templates.

use super::{OnFailure, Step, Template};

/// Builds a [`Template`] in code; [`Template::builder`] starts one.
///
/// ```
/// use duraflow_dag::{InputRef, Step, Template};
///
/// let t = Template::builder("shop", "refund", "1.0.0")
///     .description("Refunds an order")
///     .step(Step::new("check", "check_refund").input("order", InputRef::input("order")))
///     .step(Step::new("pay_back", "pay_back").depends_on(["check"]))
///     .build();
/// assert_eq!(t.steps.len(), 2);
/// assert_eq!(t.id().to_string(), "shop/refund@1.0.0");
/// ```
#[derive(Clone, Debug)]
pub struct TemplateBuilder {
    template: Template,
}

impl TemplateBuilder {
    pub(crate) fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        TemplateBuilder {
            template: Template {
                namespace: namespace.into(),
                name: name.into(),
                version: version.into(),
                description: String::new(),
                input_schema: None,
                on_failure: OnFailure::default(),
                steps: Vec::new(),
            },
        }
    }

    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.template.description = text.into();
        self
    }

    /// Sets the JSON Schema the run's input must satisfy.
    pub fn input_schema(mut self, schema: serde_json::Value) -> Self {
        self.template.input_schema = Some(schema);
        self
    }

    /// Sets what a run does when a step fails for good ([`OnFailure`]).
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.template.on_failure = on_failure;
        self
    }

    /// Adds a step.
    pub fn step(mut self, step: Step) -> Self {
        self.template.steps.push(step);
        self
    }

    /// The template, unchecked: [`validate`](crate::validate()) or a
    /// [`Registry`](crate::Registry) checks it.
    pub fn build(self) -> Template {
        self.template
    }
}
