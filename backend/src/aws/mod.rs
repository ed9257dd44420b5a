//! The AWS backend: every port on AWS APIs, with the same semantics as the embedded one
//! (the contract suite in `tests/it/contract.rs` runs against both, here on a moto server).
//!
//! | port | service | module |
//! |---|---|---|
//! | event store | DynamoDB event table | [`event_store`] |
//! | idempotency, handler ledger | DynamoDB ledger table | [`idempotency`] |
//! | read model | DynamoDB table + `status-index` GSI, named by a pointer | [`read_model`], [`live_table`] |
//! | change feed | DynamoDB Streams | [`change_feed`] |
//! | publisher | EventBridge | [`bus`] |
//! | queues | SQS | [`queues`] |
//! | documents | S3 | [`documents`] |
//! | event archive, projection scan (replay and audit) | Scan / Query / BatchGetItem | [`archive`] |
//! | projection rebuild | a fresh table, then the pointer flipped | [`rebuild`] |
//!
//! [`Aws::connect`] builds the clients once per process from `aws-config`; it sends no
//! request, so it also works before [`Aws::bootstrap`] has created anything.

pub mod archive;
pub mod bootstrap;
pub mod bus;
pub mod change_feed;
pub mod config;
pub mod documents;
mod dynamo;
pub mod event_store;
pub mod idempotency;
pub mod live_table;
pub mod metrics;
pub mod parked;
pub mod queues;
pub mod read_model;
pub mod rebuild;

use std::sync::Arc;

use aws_config::SdkConfig;

pub use archive::DynamoArchive;
pub use bus::EventBridgePublisher;
pub use change_feed::StreamsChangeFeed;
pub use config::{AwsConfig, Clients};
pub use documents::S3Documents;
pub use event_store::DynamoEventStore;
pub use idempotency::DynamoLedger;
pub use live_table::LiveTable;
pub use metrics::RequestCounter;
pub use parked::SqsParked;
pub use queues::SqsQueues;
pub use read_model::{DynamoReadModel, STATUS_INDEX};
pub use rebuild::DynamoRebuild;

use crate::ports::{Ports, StoreError};

/// All AWS adapters of one deployment, sharing one set of clients.
pub struct Aws {
    pub config: AwsConfig,
    pub clients: Clients,
    /// Every request the adapters send, by operation.
    pub requests: RequestCounter,
    pub events: Arc<DynamoEventStore>,
    pub ledger: Arc<DynamoLedger>,
    /// Which read model table is live (shared by the read model and the audit adapters).
    pub live: Arc<LiveTable>,
    pub read_model: Arc<DynamoReadModel>,
    pub feed: Arc<StreamsChangeFeed>,
    pub publisher: Arc<EventBridgePublisher>,
    pub queues: Arc<SqsQueues>,
    pub documents: Arc<S3Documents>,
    /// The projector's on-failure queue.
    pub parked: Arc<SqsParked>,
}

impl Aws {
    /// Loads the SDK configuration (environment, profile, credential chain,
    /// `AWS_ENDPOINT_URL`; the config's region and endpoint win) and builds the adapters.
    pub async fn connect(config: AwsConfig) -> Result<Self, StoreError> {
        let sdk = config.load_sdk_config().await;
        if sdk.region().is_none() {
            return Err(StoreError::new(
                "configuring AWS",
                "no region: set AWS_REGION (or a profile's region, or --region)",
            ));
        }
        Ok(Self::with_sdk_config(config, &sdk))
    }

    /// The adapters over an SDK configuration built by the caller (tests, custom
    /// credentials). The config's endpoint, if any, overrides the SDK configuration's.
    pub fn with_sdk_config(config: AwsConfig, sdk: &SdkConfig) -> Self {
        let sdk = match &config.endpoint_url {
            Some(url) => sdk.to_builder().endpoint_url(url).build(),
            None => sdk.clone(),
        };
        let requests = RequestCounter::default();
        let clients = Clients::new(&sdk, &requests, config.interceptor.as_ref());
        let c = &config;
        let live = Arc::new(LiveTable::new(
            clients.dynamodb.clone(),
            c.ledger_table.clone(),
            c.read_model_table.clone(),
            c.read_model_cache,
        ));
        let feed = Arc::new(StreamsChangeFeed::new(
            clients.dynamodb.clone(),
            clients.streams.clone(),
            c.events_table.clone(),
            c.ledger_table.clone(),
        ));
        Self {
            parked: Arc::new(SqsParked::new(
                clients.sqs.clone(),
                clients.streams.clone(),
                feed.clone(),
                c.queue_name(parked::PROJECTOR_FAILURES),
            )),
            events: Arc::new(DynamoEventStore::new(
                clients.dynamodb.clone(),
                c.events_table.clone(),
                c.ledger_table.clone(),
            )),
            ledger: Arc::new(DynamoLedger::new(
                clients.dynamodb.clone(),
                c.ledger_table.clone(),
            )),
            read_model: Arc::new(DynamoReadModel::new(clients.dynamodb.clone(), live.clone())),
            live,
            feed,
            publisher: Arc::new(EventBridgePublisher::new(
                clients.eventbridge.clone(),
                c.event_bus.clone(),
            )),
            queues: Arc::new(SqsQueues::new(clients.sqs.clone(), c.queue_prefix.clone())),
            documents: Arc::new(S3Documents::new(
                clients.s3.clone(),
                c.documents_bucket.clone(),
            )),
            clients,
            requests,
            config,
        }
    }

    /// The event table and the live read model, read-only, for replay and audit.
    pub fn archive(&self) -> Arc<DynamoArchive> {
        Arc::new(DynamoArchive::new(
            self.clients.dynamodb.clone(),
            self.config.events_table.clone(),
            self.live.clone(),
        ))
    }

    /// Rebuilds the read model into a fresh table and swaps it in.
    pub fn rebuilder(&self) -> DynamoRebuild {
        DynamoRebuild::new(
            self.clients.dynamodb.clone(),
            self.archive(),
            self.live.clone(),
            self.config.ledger_table.clone(),
        )
    }

    pub fn ports(&self) -> Ports {
        Ports {
            events: self.events.clone(),
            idempotency: self.ledger.clone(),
            read_model: self.read_model.clone(),
            feed: self.feed.clone(),
            publisher: self.publisher.clone(),
            queues: self.queues.clone(),
            documents: self.documents.clone(),
            telemetry: std::sync::Arc::new(crate::ports::NoTelemetry),
            parked: self.parked.clone(),
        }
    }
}
