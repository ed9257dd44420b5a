//! The intake Lambda: SQS batches of the intake queue (commands from the web, mobile and
//! ATM channels) in, partial batch failures out. Clients are built once per execution
//! environment.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use backend::aws::{Aws, AwsConfig};
use command_api::Intake;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    backend::emf::emit_to_stdout();
    let aws = Aws::connect(AwsConfig::from_env()).await?;
    let intake = Intake::new(
        &aws.ports(),
        aws.documents.clone(),
        events_schema::route_table(),
    );
    let intake = &intake;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(
            command_api::intake_lambda::handle(intake, event.payload).await,
        )
    }))
    .await
}
