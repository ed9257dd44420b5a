//! A status handler Lambda: SQS batches of its route's queue in, partial batch failures out.
//! `ORDERS_HANDLER` names the handler (the route table's `handler`).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use backend::aws::{Aws, AwsConfig};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    backend::emf::emit_to_stdout();
    let name = std::env::var("ORDERS_HANDLER")
        .map_err(|_| "ORDERS_HANDLER is not set; it names the route's handler, e.g. received")?;
    let aws = Aws::connect(AwsConfig::from_env()).await?;
    let handler = handlers::handler(
        &name,
        aws.ledger.clone(),
        aws.documents.clone(),
        aws.events.clone(),
        None,
    )
    .ok_or_else(|| format!("no handler named {name:?}"))?;
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(handlers::lambda::handle(handler, event.payload).await)
    }))
    .await
}
