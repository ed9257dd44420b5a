//! The command API Lambda: the same axum router `orders dev` serves, behind API Gateway's
//! HTTP API, on the AWS adapters. Clients are built once per execution environment.

use backend::aws::{Aws, AwsConfig};
use command_api::{App, router};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // JSON when the function's log format is JSON (AWS_LAMBDA_LOG_FORMAT).
    lambda_http::tracing::init_default_subscriber();
    let aws = Aws::connect(AwsConfig::from_env()).await?;
    // Lambda's event source mappings drive the projector and handlers, not this process.
    let app = App::new(&aws.ports(), events_schema::route_table()).without_pipeline();
    lambda_http::run(router(app)).await
}
