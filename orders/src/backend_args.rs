//! `--backend embedded|aws` and what goes with it: one place where a command gets its ports.

use std::path::PathBuf;

use anyhow::Context;
use backend::{
    Ports,
    audit::Verifier,
    aws::{Aws, AwsConfig},
    embedded::{Embedded, SqliteArchive},
};
use events_schema::RouteTable;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// SQLite files in the data directory, one process.
    #[default]
    Embedded,
    /// DynamoDB, DynamoDB Streams, EventBridge, SQS and S3, at `--endpoint` or real AWS.
    Aws,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BackendArgs {
    /// Where orders are kept.
    #[arg(long, env = "ORDERS_BACKEND", value_enum, default_value_t = BackendKind::Embedded)]
    pub backend: BackendKind,
    /// Directory that holds the embedded backend's data.
    #[arg(long, env = "ORDERS_DATA", default_value = "./.orders")]
    pub data: PathBuf,
    /// AWS backend: one endpoint for every service (e.g. a moto server); real AWS without it.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub endpoint: Option<String>,
    /// AWS backend: the region (else the environment's or profile's).
    #[arg(long)]
    pub region: Option<String>,
}

/// A backend opened for one process.
pub struct Opened {
    pub ports: Ports,
    /// EventBridge `Source` of published events.
    pub source: String,
    /// Where the data lives, for logs.
    pub location: String,
    /// Where the intake archives the messages it accepted (the document store's `intake/`).
    pub intake_archive: std::sync::Arc<dyn backend::IntakeArchive>,
    /// `audit verify` over the same data (the console runs it).
    pub audit: Verifier,
    /// Keeps the backend alive (the embedded data directory's lock, the AWS clients).
    pub _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl BackendArgs {
    /// The AWS adapters for these arguments' endpoint and region (names from the
    /// environment).
    pub async fn connect_aws(&self) -> anyhow::Result<Aws> {
        let mut config = AwsConfig::from_env();
        config.endpoint_url = self.endpoint.clone();
        config.region = self.region.clone();
        Aws::connect(config).await.context("cannot reach AWS")
    }

    pub async fn open(&self, routes: &RouteTable) -> anyhow::Result<Opened> {
        match self.backend {
            BackendKind::Embedded => {
                let embedded = Embedded::open(&self.data, routes).with_context(|| {
                    format!("cannot open the data directory {}", self.data.display())
                })?;
                let archive = std::sync::Arc::new(
                    SqliteArchive::open(embedded.dir()).context("opening the event archive")?,
                );
                Ok(Opened {
                    ports: embedded.ports(),
                    intake_archive: embedded.documents.clone(),
                    audit: Verifier {
                        archive: archive.clone(),
                        projection: archive,
                    },
                    source: routes.source.clone(),
                    location: embedded.dir().display().to_string(),
                    _keep: Box::new(embedded),
                })
            }
            BackendKind::Aws => {
                let aws = self.connect_aws().await?;
                let archive = aws.archive();
                Ok(Opened {
                    ports: aws.ports(),
                    intake_archive: aws.documents.clone(),
                    audit: Verifier {
                        archive: archive.clone(),
                        projection: archive,
                    },
                    source: aws.config.event_source.clone(),
                    location: match &aws.config.endpoint_url {
                        Some(url) => format!("AWS API at {url}"),
                        None => "AWS".into(),
                    },
                    _keep: Box::new(aws),
                })
            }
        }
    }
}
