//! The purchase workflow: ask several suppliers for quotes at once and go on once two have
//! answered (`ctx.map` with a completion policy), wait for a person to approve the cheapest
//! quote (`ctx.callback`), then place the order and poll the supplier's job until it is done
//! (`ctx.wait_for_condition`).

use std::sync::atomic::{AtomicU32, Ordering};

use duraflow::prelude::*;
use duraflow::EngineBuilder;
use serde::{Deserialize, Serialize};

/// The suppliers asked for a quote. Two of them fail (see [`quote`]).
pub(crate) const SUPPLIERS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];

/// What to buy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) id: String,
    pub(crate) item: String,
    pub(crate) quantity: u64,
}

/// A supplier's price.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Quote {
    pub(crate) supplier: String,
    pub(crate) cents: u64,
}

/// The approver's answer, sent through the callback.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Approval {
    pub(crate) approved: bool,
    pub(crate) by: String,
}

/// The supplier's fulfilment job, as the workflow last saw it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) percent_done: u32,
    pub(crate) checks: u32,
}

/// What the workflow returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Purchase {
    pub(crate) request_id: String,
    pub(crate) quotes_received: usize,
    pub(crate) quote_errors: Vec<String>,
    pub(crate) chosen: Option<Quote>,
    pub(crate) approved_by: Option<String>,
    pub(crate) job: Option<Job>,
}

/// A supplier's quote: a price made up from the names, or an error for the two suppliers that
/// cannot quote (`globex` is out of stock, `initech` does not answer).
async fn quote(supplier: &str, request: &Request) -> Result<Quote, ActivityError> {
    match supplier {
        "globex" => Err(ActivityError::terminal("globex: out of stock")),
        "initech" => Err(ActivityError::terminal("initech: no answer")),
        _ => {
            let base = supplier.bytes().map(u64::from).sum::<u64>() % 50 + 100;
            Ok(Quote {
                supplier: supplier.to_owned(),
                cents: base * request.quantity,
            })
        }
    }
}

/// The supplier's job, simulated in this process: each look at it moves it on by 25%.
static JOB_PROGRESS: AtomicU32 = AtomicU32::new(0);

fn look_at_job() -> u32 {
    (JOB_PROGRESS.fetch_add(25, Ordering::SeqCst) + 25).min(100)
}

/// The workflow (registered as `purchase`).
pub(crate) async fn purchase(
    ctx: WorkflowContext,
    request: Request,
) -> Result<Purchase, WorkflowError> {
    // 1. Quotes from every supplier at once; decided as soon as two have answered.
    let suppliers: Vec<String> = SUPPLIERS.iter().map(|s| (*s).to_owned()).collect();
    let asked = request.clone();
    let quotes = ctx
        .map(
            "quotes",
            suppliers,
            move |child, supplier: String, _index| {
                let request = asked.clone();
                async move {
                    child
                        .step("quote", move |_| {
                            let (supplier, request) = (supplier.clone(), request.clone());
                            async move { quote(&supplier, &request).await }
                        })
                        .await
                }
            },
        )
        .completion(CompletionConfig::min_successful(2))
        .await?;
    let quote_errors: Vec<String> = quotes.errors().iter().map(|f| f.to_string()).collect();
    let mut received: Vec<Quote> = quotes.results().into_iter().cloned().collect();
    received.sort_by_key(|q| q.cents);
    let Some(cheapest) = received.first().cloned() else {
        return Err(WorkflowError::application("no supplier could quote"));
    };
    let mut outcome = Purchase {
        request_id: request.id.clone(),
        quotes_received: received.len(),
        quote_errors,
        chosen: Some(cheapest.clone()),
        approved_by: None,
        job: None,
    };

    // 2. A person approves the cheapest quote by presenting the callback's token.
    let approval = ctx
        .callback::<Approval>("approval")
        .timeout(Duration::from_secs(3600));
    let token = approval.token();
    let summary = format!(
        "{} x {} from {} for {} cents",
        request.quantity, request.item, cheapest.supplier, cheapest.cents
    );
    ctx.step("ask for approval", move |_| {
        let (token, summary) = (token.clone(), summary.clone());
        async move {
            // A real workflow would e-mail this link; the example prints it.
            println!("workflow: approval needed for {summary}; token {token}");
            Ok(())
        }
    })
    .await?;
    let answer = approval.await?;
    if !answer.approved {
        outcome.chosen = None;
        return Ok(outcome);
    }
    outcome.approved_by = Some(answer.by);

    // 3. Place the order and poll the supplier's job until it is done, on durable timers.
    let job_id = ctx.uuid().to_string();
    let start = Job {
        id: job_id,
        percent_done: 0,
        checks: 0,
    };
    let job = ctx
        .wait_for_condition(
            "job done",
            start,
            |mut job: Job, _step| async move {
                job.percent_done = look_at_job();
                job.checks += 1;
                println!("workflow: job {} is {}% done", job.id, job.percent_done);
                Ok(if job.percent_done >= 100 {
                    Condition::Done(job)
                } else {
                    Condition::Continue(job)
                })
            },
            WaitStrategy::fixed(Duration::from_millis(200)).max_attempts(20),
        )
        .await?;
    outcome.job = Some(job);
    Ok(outcome)
}

/// Registers the workflow on `builder`.
pub(crate) fn register(builder: EngineBuilder) -> EngineBuilder {
    builder.workflow("purchase", purchase)
}
