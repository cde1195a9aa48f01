//! The signature of an activity: its name and its input and output types, which workflow code
//! names to schedule it by type.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// What workflow code knows of an activity: the name it is registered under, and its input and
/// output types. Scheduling it by type ([`WorkflowContext::call`](crate::WorkflowContext::call))
/// checks the input's type and infers the output's.
///
/// The signature lives here, in the core, so that a crate of workflows can name its activities
/// without depending on the runtime; the runtime's `Activity` trait adds the code that runs
/// them (`impl Activity for Charge { async fn run(..) }`) to a type that has this signature.
///
/// ```
/// use duraflow_core::{ActivitySignature, WorkflowContext, WorkflowError};
///
/// /// Charges a card; the worker that runs it implements `duraflow_runtime::Activity`.
/// struct Charge;
///
/// impl ActivitySignature for Charge {
///     const NAME: &'static str = "charge";
///     type Input = u64;
///     type Output = String;
/// }
///
/// async fn checkout(ctx: WorkflowContext, cents: u64) -> Result<String, WorkflowError> {
///     // The receipt's type comes from `Charge::Output`.
///     let receipt = ctx.call::<Charge>(&cents).await?;
///     Ok(receipt)
/// }
/// ```
pub trait ActivitySignature: 'static {
    /// The name it is registered and scheduled under.
    const NAME: &'static str;
    /// The input type.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The output type.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Its default queue: `ctx.call::<A>` sends its tasks there unless the call names another
    /// (`.queue(..)`), and an engine that registers it by type serves that queue too. `None`
    /// (the default) is [`crate::DEFAULT_QUEUE`].
    const QUEUE: Option<&'static str> = None;
}
