//! The projector Lambda: DynamoDB stream batches of the event table in, batch-item failures
//! out (the event source mapping bisects and retries them).

use aws_lambda_events::{dynamodb, streams::DynamoDbEventResponse};
use backend::aws::{Aws, AwsConfig};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use projector::{Projector, lambda};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    backend::emf::emit_to_stdout();
    let aws = Aws::connect(AwsConfig::from_env()).await?;
    let projector = Projector {
        read_model: aws.read_model.as_ref(),
        publisher: aws.publisher.as_ref(),
        source: &aws.config.event_source,
    };
    let projector = &projector;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<dynamodb::Event>| async move {
            Ok::<DynamoDbEventResponse, Error>(lambda::handle(projector, event.payload).await)
        },
    ))
    .await
}
