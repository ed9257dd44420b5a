//! Creates the AWS resources the adapters use, from the configuration and the route table,
//! where they are missing; running it again changes nothing (queue attributes and rules
//! are set again to what the route table says). For `orders aws bootstrap`, rehearsals on
//! an emulator and tests; in an AWS account the CDK app owns these resources.
//!
//! It never creates Lambda event source mappings: the local runtime polls the stream and
//! the queues itself, and a mapping would compete with it for the records and messages.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    VersioningConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;
use events_schema::{Route, RouteTable};

use super::{Aws, dynamo::sdk_error, read_model::STATUS_INDEX};
use crate::ports::StoreError;

/// How long a new table may take to become ACTIVE.
const TABLE_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Dead letters are kept as long as SQS allows (14 days), for operators to look at.
const DLQ_RETENTION_SECONDS: u32 = 14 * 24 * 3600;

/// A table's key attributes, its key schema and its GSI.
pub(super) struct TableSpec<'a> {
    name: &'a str,
    attributes: &'a [(&'a str, ScalarAttributeType)],
    key: &'a [(&'a str, KeyType)],
    stream: bool,
    status_index: bool,
}

fn build<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::new("building a bootstrap request", e))
}

impl Aws {
    /// Creates every missing table, the bus, each route's queue, dead-letter queue and rule,
    /// and the documents bucket. Returns what it created.
    pub async fn bootstrap(&self, routes: &RouteTable) -> Result<Vec<String>, StoreError> {
        let mut created = Vec::new();
        let c = &self.config;
        use KeyType::{Hash, Range};
        use ScalarAttributeType::{N, S};
        let tables = [
            TableSpec {
                name: &c.events_table,
                attributes: &[("orderId", S), ("version", N)],
                key: &[("orderId", Hash), ("version", Range)],
                stream: true,
                status_index: false,
            },
            read_model_spec(&c.read_model_table),
            TableSpec {
                name: &c.ledger_table,
                attributes: &[("pk", S)],
                key: &[("pk", Hash)],
                stream: false,
                status_index: false,
            },
        ];
        for spec in &tables {
            if ensure_table(&self.clients.dynamodb, spec).await? {
                created.push(format!("table {}", spec.name));
            }
        }
        self.ensure_ttl(&c.ledger_table, "expiresAt").await?;
        if self.ensure_bus().await? {
            created.push(format!("event bus {}", c.event_bus));
        }
        for route in &routes.routes {
            created.extend(self.ensure_route(route).await?);
        }
        if self.ensure_bucket().await? {
            created.push(format!("bucket {}", c.documents_bucket));
        }
        for what in &created {
            tracing::info!(created = %what, "bootstrap");
        }
        Ok(created)
    }

    async fn ensure_ttl(&self, table: &str, attribute: &str) -> Result<(), StoreError> {
        const CONTEXT: &str = "enabling TTL on the ledger";
        let db = &self.clients.dynamodb;
        let out = db
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| sdk_error(CONTEXT, e))?;
        let status = out
            .time_to_live_description
            .and_then(|d| d.time_to_live_status);
        if matches!(
            status,
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) {
            return Ok(());
        }
        db.update_time_to_live()
            .table_name(table)
            .time_to_live_specification(build(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(attribute)
                    .build(),
            )?)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error(CONTEXT, e))
    }

    async fn ensure_bus(&self) -> Result<bool, StoreError> {
        const CONTEXT: &str = "creating the event bus";
        let bus = &self.config.event_bus;
        if bus == "default" {
            return Ok(false);
        }
        let eb = &self.clients.eventbridge;
        match eb.describe_event_bus().name(bus).send().await {
            Ok(_) => return Ok(false),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(err) => return Err(sdk_error(CONTEXT, err)),
        }
        match eb.create_event_bus().name(bus).send().await {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_already_exists_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(sdk_error(CONTEXT, err)),
        }
    }

    /// The route's dead-letter queue, queue (redrive policy from the route table), rule
    /// (the route's pattern with the configured source) and the queue as its target.
    async fn ensure_route(&self, route: &Route) -> Result<Vec<String>, StoreError> {
        let mut created = Vec::new();
        let c = &self.config;
        let dlq_name = c.queue_name(&route.dead_letter_queue);
        let (dlq_url, new) = self
            .ensure_queue(
                &dlq_name,
                vec![(
                    QueueAttributeName::MessageRetentionPeriod,
                    DLQ_RETENTION_SECONDS.to_string(),
                )],
            )
            .await?;
        if new {
            created.push(format!("queue {dlq_name}"));
        }
        let dlq_arn = self.queue_arn(&dlq_url).await?;
        let queue_name = c.queue_name(&route.queue);
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": route.max_receive_count,
        });
        let (queue_url, new) = self
            .ensure_queue(
                &queue_name,
                vec![
                    (
                        QueueAttributeName::VisibilityTimeout,
                        route.visibility_timeout_seconds.to_string(),
                    ),
                    (QueueAttributeName::RedrivePolicy, redrive.to_string()),
                ],
            )
            .await?;
        if new {
            created.push(format!("queue {queue_name}"));
        }
        let queue_arn = self.queue_arn(&queue_url).await?;

        let mut pattern = route.event_pattern.clone();
        pattern["source"] = serde_json::json!([c.event_source]);
        let rule_name = c.queue_name(&route.rule);
        let eb = &self.clients.eventbridge;
        let rule = eb
            .put_rule()
            .name(&rule_name)
            .event_bus_name(&c.event_bus)
            .event_pattern(pattern.to_string())
            .description(format!(
                "Order events whose order status is {} -> {queue_name} (routes.json)",
                route.status.as_str()
            ))
            .state(aws_sdk_eventbridge::types::RuleState::Enabled)
            .send()
            .await
            .map_err(|e| sdk_error("creating a rule", e))?;
        let rule_arn = rule.rule_arn.unwrap_or_default();
        let target = build(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(&queue_arn)
                .build(),
        )?;
        let out = eb
            .put_targets()
            .rule(&rule_name)
            .event_bus_name(&c.event_bus)
            .targets(target)
            .send()
            .await
            .map_err(|e| sdk_error("adding a rule's target", e))?;
        if out.failed_entry_count > 0 {
            return Err(StoreError::new(
                "adding a rule's target",
                format!("{rule_name}: {:?}", out.failed_entries()),
            ));
        }
        // Real SQS takes EventBridge's messages only if the queue policy lets this rule send
        // (moto delivers without one).
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "FromItsRuleOnly",
                "Effect": "Allow",
                "Principal": { "Service": "events.amazonaws.com" },
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": { "ArnEquals": { "aws:SourceArn": rule_arn } },
            }],
        });
        self.clients
            .sqs
            .set_queue_attributes()
            .queue_url(&queue_url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .map_err(|e| sdk_error("setting a queue policy", e))?;
        Ok(created)
    }

    /// The queue's URL, creating it with `attributes` (plus SSE) if missing, else setting
    /// them; `true` if created.
    async fn ensure_queue(
        &self,
        name: &str,
        mut attributes: Vec<(QueueAttributeName, String)>,
    ) -> Result<(String, bool), StoreError> {
        const CONTEXT: &str = "creating a queue";
        attributes.push((QueueAttributeName::SqsManagedSseEnabled, "true".into()));
        let sqs = &self.clients.sqs;
        match sqs.get_queue_url().queue_name(name).send().await {
            Ok(out) => {
                let url = out.queue_url.unwrap_or_default();
                sqs.set_queue_attributes()
                    .queue_url(&url)
                    .set_attributes(Some(attributes.into_iter().collect()))
                    .send()
                    .await
                    .map_err(|e| sdk_error("updating a queue", e))?;
                Ok((url, false))
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_queue_does_not_exist()) =>
            {
                let out = sqs
                    .create_queue()
                    .queue_name(name)
                    .set_attributes(Some(attributes.into_iter().collect()))
                    .send()
                    .await
                    .map_err(|e| sdk_error(CONTEXT, e))?;
                Ok((out.queue_url.unwrap_or_default(), true))
            }
            Err(err) => Err(sdk_error(CONTEXT, err)),
        }
    }

    async fn queue_arn(&self, url: &str) -> Result<String, StoreError> {
        let out = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sdk_error("reading a queue's ARN", e))?;
        out.attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| StoreError::new("reading a queue's ARN", format!("none for {url}")))
    }

    async fn ensure_bucket(&self) -> Result<bool, StoreError> {
        const CONTEXT: &str = "creating the documents bucket";
        let s3 = &self.clients.s3;
        let bucket = &self.config.documents_bucket;
        let exists = match s3.head_bucket().bucket(bucket).send().await {
            Ok(_) => true,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => false,
            Err(err) => return Err(sdk_error(CONTEXT, err)),
        };
        let mut created = false;
        if !exists {
            let mut request = s3.create_bucket().bucket(bucket);
            // us-east-1 is the one region S3 wants no location constraint for.
            let region = s3.config().region().map(|r| r.as_ref().to_owned());
            if let Some(region) = region.filter(|r| r != "us-east-1") {
                request = request.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(region.as_str()))
                        .build(),
                );
            }
            match request.send().await {
                Ok(_) => created = true,
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
                Err(err) => return Err(sdk_error(CONTEXT, err)),
            }
        }
        // New buckets encrypt with SSE-S3 by default; versioning keeps overwritten documents.
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("enabling bucket versioning", e))?;
        Ok(created)
    }
}

/// The read model table's shape (a rebuild creates its fresh tables with it too).
pub(super) fn read_model_spec(name: &str) -> TableSpec<'_> {
    use KeyType::Hash;
    use ScalarAttributeType::S;
    TableSpec {
        name,
        attributes: &[("orderId", S), ("status", S), ("createdKey", S)],
        key: &[("orderId", Hash)],
        stream: false,
        status_index: true,
    }
}

/// `true` if the table was created.
pub(super) async fn ensure_table(
    db: &aws_sdk_dynamodb::Client,
    spec: &TableSpec<'_>,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "creating a table";
    match db.describe_table().table_name(spec.name).send().await {
        Ok(out) => {
            let streaming = out
                .table
                .as_ref()
                .and_then(|t| t.stream_specification.as_ref())
                .is_some_and(|s| s.stream_enabled);
            if spec.stream && !streaming {
                // The change feed needs it; turning it on loses nothing.
                db.update_table()
                    .table_name(spec.name)
                    .stream_specification(new_image_stream()?)
                    .send()
                    .await
                    .map_err(|e| sdk_error("enabling the event table's stream", e))?;
                wait_for_table(db, spec.name).await?;
            }
            return Ok(false);
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) => {}
        Err(err) => return Err(sdk_error(CONTEXT, err)),
    }
    let mut request = db
        .create_table()
        .table_name(spec.name)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind) in spec.attributes {
        request = request.attribute_definitions(build(
            AttributeDefinition::builder()
                .attribute_name(*name)
                .attribute_type(kind.clone())
                .build(),
        )?);
    }
    for (name, kind) in spec.key {
        request = request.key_schema(key(name, kind.clone())?);
    }
    if spec.stream {
        request = request.stream_specification(new_image_stream()?);
    }
    if spec.status_index {
        request = request.global_secondary_indexes(build(
            GlobalSecondaryIndex::builder()
                .index_name(STATUS_INDEX)
                .key_schema(key("status", KeyType::Hash)?)
                .key_schema(key("createdKey", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build(),
        )?);
    }
    match request.send().await {
        Ok(_) => {}
        // Another bootstrap got there first.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            return Ok(false);
        }
        Err(err) => return Err(sdk_error(CONTEXT, err)),
    }
    wait_for_table(db, spec.name).await?;
    Ok(true)
}

/// Until the table and its indexes are ACTIVE.
pub(super) async fn wait_for_table(
    db: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + TABLE_READY_TIMEOUT;
    loop {
        let out = db
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("waiting for a table", e))?;
        let ready = out.table.is_some_and(|table| {
            table.table_status == Some(TableStatus::Active)
                && table.global_secondary_indexes().iter().all(|i| {
                    i.index_status
                        .as_ref()
                        .is_none_or(|s| s.as_str() == "ACTIVE")
                })
        });
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(StoreError::new(
                "waiting for a table",
                format!("{name} is not ACTIVE after {TABLE_READY_TIMEOUT:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    build(
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build(),
    )
}

fn new_image_stream() -> Result<StreamSpecification, StoreError> {
    build(
        StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::NewImage)
            .build(),
    )
}
