//! Where the AWS adapters find their resources (`AwsConfig`, read from the environment the
//! Lambdas get) and the SDK clients, built once per process from one `aws-config` load.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::SharedInterceptor;

use super::metrics::RequestCounter;

/// The names of the AWS resources one deployment uses, and how to reach AWS.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// Event table (PK `orderId` S, SK `version` N, stream `NEW_IMAGE`).
    pub events_table: String,
    /// Read model table (PK `orderId` S, GSI `status-index`): the live one until the first
    /// `orders rebuild`; from then on the ledger's live-table pointer names the live one
    /// (see [`super::live_table`]), and this name is the prefix of rebuilt tables.
    pub read_model_table: String,
    /// Idempotency records, handler ledger and stream checkpoints (PK `pk` S, TTL
    /// `expiresAt`).
    pub ledger_table: String,
    pub documents_bucket: String,
    pub event_bus: String,
    /// EventBridge `Source` of the order events.
    pub event_source: String,
    /// Put before every route queue name (the CDK app's `queueNamePrefix`), so that two
    /// deployments can share an account; the ports keep using the route table's names.
    pub queue_prefix: String,
    /// Overrides the region of the environment (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Overrides the endpoint of every service (`AWS_ENDPOINT_URL`), e.g. a moto server.
    pub endpoint_url: Option<String>,
    /// How long a process may use the live-table pointer it read before reading it again;
    /// a rebuild waits this long (and a margin) after swapping tables before its catch-up.
    /// Every process of a deployment must use the same value, so it is not read from the
    /// environment: [`super::live_table::POINTER_CACHE`] (tests shorten it in-process).
    pub read_model_cache: Duration,
    /// One more SDK interceptor on every client, after the request counter: the hook for
    /// fault injection (a test rewrites chosen requests and answers into throttling,
    /// conditional failures, partial batch results; see `backend/tests/it/faults.rs`).
    /// Never read from the environment; `None` in production.
    pub interceptor: Option<SharedInterceptor>,
}

pub const ENV_EVENTS_TABLE: &str = "ORDERS_EVENTS_TABLE";
pub const ENV_READ_MODEL_TABLE: &str = "ORDERS_READ_MODEL_TABLE";
pub const ENV_LEDGER_TABLE: &str = "ORDERS_LEDGER_TABLE";
pub const ENV_DOCUMENTS_BUCKET: &str = "ORDERS_DOCUMENTS_BUCKET";
pub const ENV_EVENT_BUS: &str = "ORDERS_EVENT_BUS";
pub const ENV_EVENT_SOURCE: &str = "ORDERS_EVENT_SOURCE";
pub const ENV_QUEUE_PREFIX: &str = "ORDERS_QUEUE_PREFIX";

impl Default for AwsConfig {
    fn default() -> Self {
        Self::prefixed("")
    }
}

impl AwsConfig {
    /// The default names, each behind `prefix`: fresh, isolated resources for a test or a
    /// rehearsal in a shared emulator or account.
    pub fn prefixed(prefix: &str) -> Self {
        Self {
            events_table: format!("{prefix}orders-events"),
            read_model_table: format!("{prefix}orders-read-model"),
            ledger_table: format!("{prefix}orders-ledger"),
            documents_bucket: format!("{prefix}ordersource-documents"),
            event_bus: format!("{prefix}ordersource"),
            event_source: "ordersource.orders".into(),
            queue_prefix: prefix.into(),
            region: None,
            endpoint_url: None,
            read_model_cache: super::live_table::POINTER_CACHE,
            interceptor: None,
        }
    }

    /// The names the Lambdas get in their environment (see the CDK app), defaults for the
    /// ones not set.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`AwsConfig::from_env`], over any lookup (tests, CLI flags).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let defaults = Self::default();
        let get = |name: &str, default: String| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or(default)
        };
        Self {
            events_table: get(ENV_EVENTS_TABLE, defaults.events_table),
            read_model_table: get(ENV_READ_MODEL_TABLE, defaults.read_model_table),
            ledger_table: get(ENV_LEDGER_TABLE, defaults.ledger_table),
            documents_bucket: get(ENV_DOCUMENTS_BUCKET, defaults.documents_bucket),
            event_bus: get(ENV_EVENT_BUS, defaults.event_bus),
            event_source: get(ENV_EVENT_SOURCE, defaults.event_source),
            queue_prefix: lookup(ENV_QUEUE_PREFIX).unwrap_or_default(),
            region: None,
            endpoint_url: None,
            read_model_cache: defaults.read_model_cache,
            interceptor: None,
        }
    }

    /// The SQS name of a route queue (or dead-letter queue) of the route table.
    pub fn queue_name(&self, queue: &str) -> String {
        format!("{}{queue}", self.queue_prefix)
    }

    /// Loads the SDK configuration the usual way (environment, profile, credential chain,
    /// `AWS_ENDPOINT_URL`), with this configuration's region and endpoint on top.
    pub async fn load_sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader.load().await
    }
}

/// One client per service, sharing the SDK configuration and the request counter.
/// Clients are cheap to clone (an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
}

impl Clients {
    /// The clients over `sdk`, each counting its requests into `counter`, then passing them
    /// through `extra` if given (see [`AwsConfig::interceptor`]).
    pub fn new(
        sdk: &SdkConfig,
        counter: &RequestCounter,
        extra: Option<&SharedInterceptor>,
    ) -> Self {
        let interceptors: Vec<SharedInterceptor> =
            std::iter::once(SharedInterceptor::new(counter.clone()))
                .chain(extra.cloned())
                .collect();
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
        dynamodb.set_interceptors(interceptors.clone());
        let mut streams = aws_sdk_dynamodbstreams::config::Builder::from(sdk);
        streams.set_interceptors(interceptors.clone());
        let mut eventbridge = aws_sdk_eventbridge::config::Builder::from(sdk);
        eventbridge.set_interceptors(interceptors.clone());
        let mut sqs = aws_sdk_sqs::config::Builder::from(sdk);
        sqs.set_interceptors(interceptors.clone());
        // An emulator (or any custom endpoint) serves buckets by path, not by host name.
        let mut s3 =
            aws_sdk_s3::config::Builder::from(sdk).force_path_style(sdk.endpoint_url().is_some());
        s3.set_interceptors(interceptors);
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            streams: aws_sdk_dynamodbstreams::Client::from_conf(streams.build()),
            eventbridge: aws_sdk_eventbridge::Client::from_conf(eventbridge.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_lambda_environment_with_defaults() {
        let config = AwsConfig::from_lookup(|name| match name {
            ENV_EVENTS_TABLE => Some("ev".into()),
            ENV_EVENT_BUS => Some(" ".into()),
            _ => None,
        });
        assert_eq!(config.events_table, "ev");
        assert_eq!(config.read_model_table, "orders-read-model");
        assert_eq!(config.ledger_table, "orders-ledger");
        assert_eq!(config.documents_bucket, "ordersource-documents");
        assert_eq!(config.event_bus, "ordersource", "blank means unset");
        assert_eq!(config.event_source, "ordersource.orders");
        assert_eq!(config.queue_name("order-received"), "order-received");
    }

    #[test]
    fn a_prefix_renames_every_resource_but_the_source() {
        let config = AwsConfig::prefixed("t1-");
        assert_eq!(config.events_table, "t1-orders-events");
        assert_eq!(config.documents_bucket, "t1-ordersource-documents");
        assert_eq!(
            config.queue_name("order-received-dlq"),
            "t1-order-received-dlq"
        );
        assert_eq!(config.event_source, "ordersource.orders");
    }
}
