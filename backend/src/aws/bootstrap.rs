//! Creates the AWS resources the adapters use, from the configuration and the route table,
//! where they are missing; running it again changes nothing (queue attributes and rules
//! are set again to what the route table says). For `orders aws bootstrap`, rehearsals on
//! an emulator and tests; in an AWS account the CDK app owns these resources.
//!
//! It never creates Lambda event source mappings: the local runtime polls the stream and
//! the queues itself, and a mapping would compete with it for the records and messages.
//!
//! What it creates is a [`Plan`], data that [`plan`] derives from the configuration and the
//! route table and that `bootstrap` then carries out: the checked-in
//! `backend/aws-bootstrap-plan.json` is that plan, and the CDK tests compare it with the
//! synthesized template, so that the two ways of creating the resources cannot drift.

use std::{collections::HashMap, time::Duration};

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
use serde::Serialize;

use super::{Aws, AwsConfig, dynamo::sdk_error, read_model::STATUS_INDEX};
use crate::ports::StoreError;

/// How long a new table may take to become ACTIVE.
const TABLE_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Messages are kept as long as SQS allows (14 days): dead letters for operators to look
/// at, and route messages through a long outage of their handler.
const RETENTION_SECONDS: u32 = 14 * 24 * 3600;

/// Everything `bootstrap` creates, as data (the names of CloudFormation's properties, for
/// the comparison with the CDK template).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub tables: Vec<TablePlan>,
    /// Each dead-letter queue before the queues that use it.
    pub queues: Vec<QueuePlan>,
    pub event_bus: String,
    pub documents_bucket: String,
}

/// A table, on-demand, with the shape the adapters rely on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TablePlan {
    /// The construct id of the same table in the CDK app.
    pub role: &'static str,
    pub table_name: String,
    pub key_schema: Vec<KeyPlan>,
    pub attribute_definitions: Vec<AttributePlan>,
    pub global_secondary_indexes: Vec<IndexPlan>,
    /// `NEW_IMAGE` for the table the change feed reads.
    pub stream_view_type: Option<&'static str>,
    pub time_to_live_attribute: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyPlan {
    pub attribute_name: &'static str,
    /// `HASH` or `RANGE`.
    pub key_type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributePlan {
    pub attribute_name: &'static str,
    /// `S` or `N`.
    pub attribute_type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexPlan {
    pub index_name: &'static str,
    pub key_schema: Vec<KeyPlan>,
    pub projection_type: &'static str,
}

/// A queue, encrypted with SQS-managed keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuePlan {
    pub queue_name: String,
    /// Seconds; SQS's default (30) when absent.
    pub visibility_timeout: Option<u32>,
    /// Seconds.
    pub message_retention_period: u32,
    pub redrive_policy: Option<RedrivePlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedrivePlan {
    /// The name of the dead-letter queue (its ARN once created).
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

const fn key(attribute_name: &'static str, key_type: &'static str) -> KeyPlan {
    KeyPlan {
        attribute_name,
        key_type,
    }
}

const fn attribute(attribute_name: &'static str, attribute_type: &'static str) -> AttributePlan {
    AttributePlan {
        attribute_name,
        attribute_type,
    }
}

/// What `bootstrap` creates for `config` and `routes`.
pub fn plan(config: &AwsConfig, routes: &RouteTable) -> Plan {
    let tables = vec![
        TablePlan {
            role: "EventsTable",
            table_name: config.events_table.clone(),
            key_schema: vec![key("orderId", "HASH"), key("version", "RANGE")],
            attribute_definitions: vec![attribute("orderId", "S"), attribute("version", "N")],
            global_secondary_indexes: Vec::new(),
            stream_view_type: Some("NEW_IMAGE"),
            time_to_live_attribute: None,
        },
        read_model_spec(&config.read_model_table),
        TablePlan {
            role: "LedgerTable",
            table_name: config.ledger_table.clone(),
            key_schema: vec![key("pk", "HASH")],
            attribute_definitions: vec![attribute("pk", "S")],
            global_secondary_indexes: Vec::new(),
            stream_view_type: None,
            time_to_live_attribute: Some("expiresAt"),
        },
    ];
    let mut queues = Vec::new();
    for declared in routes.queues() {
        let dead_letter_queue = config.queue_name(declared.dead_letter_queue);
        queues.push(QueuePlan {
            queue_name: dead_letter_queue.clone(),
            visibility_timeout: None,
            message_retention_period: RETENTION_SECONDS,
            redrive_policy: None,
        });
        queues.push(QueuePlan {
            queue_name: config.queue_name(declared.queue),
            visibility_timeout: Some(declared.visibility_timeout_seconds),
            message_retention_period: RETENTION_SECONDS,
            redrive_policy: Some(RedrivePlan {
                dead_letter_queue,
                max_receive_count: declared.max_receive_count,
            }),
        });
    }
    // The projector's on-failure destination: where its stream records are parked.
    queues.push(QueuePlan {
        queue_name: config.queue_name(super::parked::PROJECTOR_FAILURES),
        visibility_timeout: None,
        message_retention_period: RETENTION_SECONDS,
        redrive_policy: None,
    });
    Plan {
        tables,
        queues,
        event_bus: config.event_bus.clone(),
        documents_bucket: config.documents_bucket.clone(),
    }
}

fn build<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::new("building a bootstrap request", e))
}

impl Aws {
    /// Creates every missing table, the bus, each route's queue, dead-letter queue and rule,
    /// and the documents bucket. Returns what it created.
    pub async fn bootstrap(&self, routes: &RouteTable) -> Result<Vec<String>, StoreError> {
        let mut created = Vec::new();
        let plan = plan(&self.config, routes);
        for table in &plan.tables {
            if ensure_table(&self.clients.dynamodb, table).await? {
                created.push(format!("table {}", table.table_name));
            }
            if let Some(attribute) = table.time_to_live_attribute {
                self.ensure_ttl(&table.table_name, attribute).await?;
            }
        }
        if self.ensure_bus().await? {
            created.push(format!("event bus {}", plan.event_bus));
        }
        // Each queue's URL and ARN, by name; dead-letter queues come first in the plan.
        let mut made: HashMap<&str, (String, String)> = HashMap::new();
        for queue in &plan.queues {
            let redrive = match &queue.redrive_policy {
                Some(r) => {
                    let (_, dlq_arn) = made.get(r.dead_letter_queue.as_str()).ok_or_else(|| {
                        StoreError::new(
                            "creating a queue",
                            format!(
                                "{}'s dead-letter queue is not planned before it",
                                queue.queue_name
                            ),
                        )
                    })?;
                    Some(serde_json::json!({
                        "deadLetterTargetArn": dlq_arn,
                        "maxReceiveCount": r.max_receive_count,
                    }))
                }
                None => None,
            };
            let mut attributes = vec![(
                QueueAttributeName::MessageRetentionPeriod,
                queue.message_retention_period.to_string(),
            )];
            if let Some(seconds) = queue.visibility_timeout {
                attributes.push((QueueAttributeName::VisibilityTimeout, seconds.to_string()));
            }
            if let Some(redrive) = redrive {
                attributes.push((QueueAttributeName::RedrivePolicy, redrive.to_string()));
            }
            let (url, new) = self.ensure_queue(&queue.queue_name, attributes).await?;
            if new {
                created.push(format!("queue {}", queue.queue_name));
            }
            let arn = self.queue_arn(&url).await?;
            made.insert(&queue.queue_name, (url, arn));
        }
        for route in &routes.routes {
            let queue_name = self.config.queue_name(&route.queue);
            let (url, arn) = made.get(queue_name.as_str()).ok_or_else(|| {
                StoreError::new("creating a rule", format!("{queue_name} is not planned"))
            })?;
            self.ensure_rule(route, &queue_name, url, arn).await?;
        }
        if self.ensure_bucket().await? {
            created.push(format!("bucket {}", plan.documents_bucket));
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

    /// The route's rule (the route's pattern with the configured source), its queue as the
    /// target, and the queue policy that lets the rule send.
    async fn ensure_rule(
        &self,
        route: &Route,
        queue_name: &str,
        queue_url: &str,
        queue_arn: &str,
    ) -> Result<(), StoreError> {
        let c = &self.config;
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
                .arn(queue_arn)
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
            .queue_url(queue_url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .map_err(|e| sdk_error("setting a queue policy", e))?;
        Ok(())
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
pub(super) fn read_model_spec(name: &str) -> TablePlan {
    TablePlan {
        role: "ReadModelTable",
        table_name: name.to_owned(),
        key_schema: vec![key("orderId", "HASH")],
        attribute_definitions: vec![
            attribute("orderId", "S"),
            attribute("status", "S"),
            attribute("createdKey", "S"),
        ],
        global_secondary_indexes: vec![IndexPlan {
            index_name: STATUS_INDEX,
            key_schema: vec![key("status", "HASH"), key("createdKey", "RANGE")],
            projection_type: "ALL",
        }],
        stream_view_type: None,
        time_to_live_attribute: None,
    }
}

/// `true` if the table was created.
pub(super) async fn ensure_table(
    db: &aws_sdk_dynamodb::Client,
    spec: &TablePlan,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "creating a table";
    let stream = spec.stream_view_type.map(StreamViewType::from);
    match db
        .describe_table()
        .table_name(&spec.table_name)
        .send()
        .await
    {
        Ok(out) => {
            let streaming = out
                .table
                .as_ref()
                .and_then(|t| t.stream_specification.as_ref())
                .is_some_and(|s| s.stream_enabled);
            if let Some(view) = stream.filter(|_| !streaming) {
                // The change feed needs it; turning it on loses nothing.
                db.update_table()
                    .table_name(&spec.table_name)
                    .stream_specification(stream_of(view)?)
                    .send()
                    .await
                    .map_err(|e| sdk_error("enabling the event table's stream", e))?;
                wait_for_table(db, &spec.table_name).await?;
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
        .table_name(&spec.table_name)
        .billing_mode(BillingMode::PayPerRequest);
    for a in &spec.attribute_definitions {
        request = request.attribute_definitions(build(
            AttributeDefinition::builder()
                .attribute_name(a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type))
                .build(),
        )?);
    }
    for k in &spec.key_schema {
        request = request.key_schema(key_element(k)?);
    }
    if let Some(view) = stream {
        request = request.stream_specification(stream_of(view)?);
    }
    for index in &spec.global_secondary_indexes {
        let mut gsi = GlobalSecondaryIndex::builder()
            .index_name(index.index_name)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::from(index.projection_type))
                    .build(),
            );
        for k in &index.key_schema {
            gsi = gsi.key_schema(key_element(k)?);
        }
        request = request.global_secondary_indexes(build(gsi.build())?);
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
    wait_for_table(db, &spec.table_name).await?;
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

fn key_element(k: &KeyPlan) -> Result<KeySchemaElement, StoreError> {
    build(
        KeySchemaElement::builder()
            .attribute_name(k.attribute_name)
            .key_type(KeyType::from(k.key_type))
            .build(),
    )
}

fn stream_of(view: StreamViewType) -> Result<StreamSpecification, StoreError> {
    build(
        StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(view)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/aws-bootstrap-plan.json");

    /// The plan of the default configuration is checked in for the CDK tests
    /// (cdk/test/bootstrap-plan.test.ts), which compare it with the template. Regenerate
    /// with `UPDATE_PLAN=1 cargo test -p backend --lib bootstrap`.
    #[test]
    fn the_checked_in_plan_is_the_one_bootstrap_carries_out() {
        let plan = plan(&AwsConfig::default(), events_schema::route_table());
        let generated = serde_json::to_string_pretty(&plan).expect("json") + "\n";
        if std::env::var_os("UPDATE_PLAN").is_some() {
            std::fs::write(PATH, &generated).expect("write the plan");
        }
        let checked_in = std::fs::read_to_string(PATH).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{PATH} is stale; run UPDATE_PLAN=1 cargo test -p backend --lib bootstrap"
        );
    }

    #[test]
    fn each_dead_letter_queue_is_planned_before_its_queue_and_queue_names_take_the_prefix() {
        let config = AwsConfig::prefixed("t1-");
        let plan = plan(&config, events_schema::route_table());
        for (i, q) in plan.queues.iter().enumerate() {
            assert!(q.queue_name.starts_with("t1-"), "{}", q.queue_name);
            if let Some(r) = &q.redrive_policy {
                assert!(
                    plan.queues[..i]
                        .iter()
                        .any(|d| d.queue_name == r.dead_letter_queue),
                    "{}",
                    q.queue_name
                );
            }
        }
        assert_eq!(plan.tables[0].table_name, "t1-orders-events");
    }
}
