/**
 * The whole ordersource service on AWS, in one stack:
 *
 *   HTTP API -> orders-api -> event table --stream--> orders-projector -> read-model table
 *                                                            |
 *                                                            v
 *                 custom bus (archive, schema registry) -- one rule per status (routes.json)
 *                                                            |
 *                                                            v
 *                              SQS queue (+DLQ) per status -> orders-handler (one per status)
 *
 *   web / mobile / ATM channels -> intake queue (+DLQ) -> orders-intake -> event table
 *
 * Every function has its own role holding exactly the actions it uses on exactly the
 * resources it uses; alarms go to one encrypted SNS topic.
 */
import * as path from 'node:path';
import { CfnElement, CfnOutput, Duration, RemovalPolicy, Stack, StackProps, Validations } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpJwtAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as eventschemas from 'aws-cdk-lib/aws-eventschemas';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, SqsDlq, SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';
import { OrdersourceSettings, resolveSettings } from './config';
import { eventSchemaDraft4, readDetailSchema, DETAIL_SCHEMA_FILE } from './event-schema';
import { IntakeQueue, loadRouteTable, patternFor, REPO_ROOT, Route, RouteTable, ROUTES_FILE } from './routes';

/** Names the Rust binaries read their configuration from (see backend's AWS adapters). */
export const ENV = {
  eventsTable: 'ORDERS_EVENTS_TABLE',
  readModelTable: 'ORDERS_READ_MODEL_TABLE',
  ledgerTable: 'ORDERS_LEDGER_TABLE',
  documentsBucket: 'ORDERS_DOCUMENTS_BUCKET',
  eventBus: 'ORDERS_EVENT_BUS',
  eventSource: 'ORDERS_EVENT_SOURCE',
  handler: 'ORDERS_HANDLER',
  documentLinkExpiry: 'ORDERS_DOCUMENT_LINK_EXPIRY_SECONDS',
  console: 'ORDERS_CONSOLE',
  queuePrefix: 'ORDERS_QUEUE_PREFIX',
  rustLog: 'RUST_LOG',
} as const;

/**
 * The handlers whose reaction reads the order's history from the event table (the
 * invoice's status history: `needs_history` in handlers/src/reactions.rs); only they get
 * the table's name and Query on it.
 */
export const HISTORY_HANDLERS: readonly string[] = ['completed'];

/** The read model's GSI by status (the Rust read-model adapter queries it by this name). */
export const STATUS_INDEX = 'status-index';

/**
 * The tables `orders rebuild` creates beside the read model table (`<name>-rebuild-<unix
 * ms>`, backend/src/aws/rebuild.rs), as an IAM resource suffix of its ARN.
 */
export const REBUILT_TABLES_SUFFIX = '-rebuild-*';

/** The ledger item that names the live read model table (backend/src/aws/live_table.rs). */
export const LIVE_TABLE_POINTER_PK = 'read-model#live';

/**
 * The ledger keys each function may touch (`dynamodb:LeadingKeys`), from the namespaces of
 * backend/src/ledger_key.rs: the API its clients' idempotency keys, each handler its own
 * claims. A function cannot read or overwrite another's records, whatever key it is given.
 */
export const API_LEDGER_KEYS = 'api/*';
/** The intake's keys: `intake/<channel>/<requestId>`. */
export const INTAKE_LEDGER_KEYS = 'intake/*';
export const handlerLedgerKeys = (handler: string) => `handler/${handler}/*`;

/** Projector stream settings (pinned by the tests). */
export const PROJECTOR_STREAM = {
  batchSize: 100,
  maxBatchingWindow: Duration.seconds(1),
  retryAttempts: 10,
  maxRecordAge: Duration.hours(6),
  /** One batch at a time per shard: events of one order are folded in version order. */
  parallelizationFactor: 1,
} as const;

/** The Lambda timeouts. A handler's timeout is derived from its queue (see handlerTimeout). */
export const TIMEOUTS = {
  api: Duration.seconds(15),
  projector: Duration.seconds(30),
} as const;

/**
 * A route handler's timeout: a sixth of its queue's visibility timeout (AWS's advice for SQS
 * event sources, so that retries of a batch do not overlap a still-running invocation),
 * at least 1 s and never more than the visibility timeout itself.
 */
export function handlerTimeout(queue: Route | IntakeQueue): Duration {
  return Duration.seconds(Math.max(1, Math.floor(queue.visibilityTimeoutSeconds / 6)));
}

export interface OrdersourceStackProps extends StackProps {
  /** Settings over the defaults (see config.ts / README). */
  readonly settings?: Partial<OrdersourceSettings>;
  /** The route table file. Default: `<repo>/events-schema/routes.json`. */
  readonly routesFile?: string;
  /** The event detail JSON Schema. Default: `<repo>/events-schema/schema/order-event-detail.schema.json`. */
  readonly detailSchemaFile?: string;
}

/** A cdk-nag finding acknowledged with its reason. */
interface NagAck {
  readonly id: string;
  readonly reason: string;
}

/** Where documents.rs keeps each order's documents: `orders/<orderId>/<name>`. */
const DOCUMENTS_PREFIX = 'orders/';
/** Where the intake archives accepted messages: `intake/<channel>/<requestId>.json`. */
export const INTAKE_ARCHIVE_PREFIX = 'intake/';
const WILDCARD_RESOURCE_ACK = 'AwsSolutions::AwsSolutions-IAM5[Resource::*]';
const XRAY_ACK_REASON = 'Active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords (added by Lambda for Tracing.ACTIVE) have no resource-level permissions, so IAM requires "*".';

/** A function's acknowledgements with the X-Ray wildcard explained (one per finding id). */
function withXrayAck(acks: NagAck[]): NagAck[] {
  const out = acks.map((a) => (a.id === WILDCARD_RESOURCE_ACK ? { id: a.id, reason: `${a.reason} ${XRAY_ACK_REASON}` } : a));
  if (!out.some((a) => a.id === WILDCARD_RESOURCE_ACK)) out.push({ id: WILDCARD_RESOURCE_ACK, reason: XRAY_ACK_REASON });
  return out;
}

/**
 * The CloudWatch namespace of the metrics the Rust Lambdas write in the embedded metric
 * format (backend/src/emf.rs), and the SEARCH expression of one metric by its dimensions.
 */
const EMF_NAMESPACE = 'Ordersource';
function emfSearch(metricName: string, dimensions: string[], label: string): cloudwatch.MathExpression {
  const schema = [EMF_NAMESPACE, ...dimensions].join(',');
  return new cloudwatch.MathExpression({
    expression: `SEARCH('{${schema}} MetricName="${metricName}"', 'Sum', 60)`,
    label,
    period: Duration.minutes(1),
  });
}

/** The intake: its queue, dead-letter queue and function (orders-intake). */
interface IntakeResources {
  readonly intake: IntakeQueue;
  readonly queue: sqs.Queue;
  readonly dlq: sqs.Queue;
  readonly fn: lambda.Function;
}

interface RouteResources {
  readonly route: Route;
  readonly rule: events.Rule;
  readonly queue: sqs.Queue;
  readonly dlq: sqs.Queue;
  readonly fn: lambda.Function;
}

export class OrdersourceStack extends Stack {
  readonly settings: OrdersourceSettings;
  readonly routeTable: RouteTable;
  readonly eventSource: string;

  readonly eventsTable: dynamodb.Table;
  readonly readModelTable: dynamodb.Table;
  readonly ledgerTable: dynamodb.Table;
  readonly documentsBucket: s3.Bucket;
  readonly bus: events.EventBus;
  readonly api: apigw.HttpApi;
  readonly apiStage: apigw.HttpStage;
  readonly apiFunction: lambda.Function;
  readonly projectorFunction: lambda.Function;
  /** ARN of the operator role allowed to publish on the bus (`orders republish`). */
  readonly operatorRoleArn: string;
  /** The operator role, when the stack created it (no `operatorRoleArn` setting). */
  readonly operatorRole?: iam.Role;
  readonly projectorFailureQueue: sqs.Queue;
  readonly routeResources: readonly RouteResources[];
  readonly intakeResources: IntakeResources;
  readonly alarmTopic: sns.Topic;

  constructor(scope: Construct, id: string, props: OrdersourceStackProps = {}) {
    super(scope, id, props);
    this.settings = resolveSettings(props.settings);
    this.routeTable = loadRouteTable(props.routesFile ?? ROUTES_FILE);
    this.eventSource = this.settings.eventSource ?? this.routeTable.source;
    const s = this.settings;
    const logRetention = s.logRetentionDays as logs.RetentionDays;

    // ---------------------------------------------------------------- storage
    this.eventsTable = new dynamodb.Table(this, 'EventsTable', {
      partitionKey: { name: 'orderId', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'version', type: dynamodb.AttributeType.NUMBER },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      stream: dynamodb.StreamViewType.NEW_IMAGE,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.readModelTable = new dynamodb.Table(this, 'ReadModelTable', {
      partitionKey: { name: 'orderId', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      // Rebuildable from the event table (`orders rebuild`), but kept: it is cheap at rest.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.readModelTable.addGlobalSecondaryIndex({
      indexName: STATUS_INDEX,
      partitionKey: { name: 'status', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'createdKey', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });

    this.ledgerTable = new dynamodb.Table(this, 'LedgerTable', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: 'expiresAt',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const accessLogsBucket = new s3.Bucket(this, 'AccessLogsBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ expiration: Duration.days(365) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(accessLogsBucket).acknowledge({
      id: 'AwsSolutions::AwsSolutions-S1',
      reason: 'This bucket is the server access log destination of the documents bucket; logging its own access would log into itself.',
    });

    this.documentsBucket = new s3.Bucket(this, 'DocumentsBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      versioned: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: accessLogsBucket,
      serverAccessLogsPrefix: 'documents/',
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // ---------------------------------------------------------------- bus
    this.bus = new events.EventBus(this, 'Bus', { eventBusName: s.busName });
    this.bus.archive('Archive', {
      archiveName: `${s.busName}-archive`.slice(0, 48),
      description: `Every ${this.eventSource} event, for native EventBridge replay.`,
      eventPattern: { source: [this.eventSource] },
      retention: Duration.days(s.archiveRetentionDays),
    });
    this.addEventSchema(props.detailSchemaFile ?? DETAIL_SCHEMA_FILE);

    // ---------------------------------------------------------------- alarms topic
    this.alarmTopic = this.createAlarmTopic();
    if (s.alarmEmail) {
      this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(s.alarmEmail));
    }

    // ---------------------------------------------------------------- functions
    const rustLog = { [ENV.rustLog]: s.rustLog };

    // orders-api: the command API behind the HTTP API.
    this.apiFunction = this.rustFunction('OrdersApi', {
      crate: 'command-api',
      binaryName: 'orders-api',
      description: 'ordersource command API (HTTP API payload v2)',
      timeout: TIMEOUTS.api,
      memorySize: 512,
      logRetention,
      environment: {
        [ENV.eventsTable]: this.eventsTable.tableName,
        [ENV.readModelTable]: this.readModelTable.tableName,
        [ENV.ledgerTable]: this.ledgerTable.tableName,
        [ENV.documentsBucket]: this.documentsBucket.bucketName,
        [ENV.documentLinkExpiry]: String(s.documentLinkExpirySeconds),
        ...rustLog,
      },
      statements: [
        new iam.PolicyStatement({
          sid: 'EventStore',
          // event_store.rs: appends are PutItem or TransactWriteItems of conditional Puts only
          // (authorized per item as PutItem; no ConditionCheck item), reads are Query; no GetItem.
          actions: ['dynamodb:Query', 'dynamodb:PutItem'],
          resources: [this.eventsTable.tableArn],
        }),
        new iam.PolicyStatement({
          sid: 'ReadModel',
          // The list is a Query on the status index or the table; nothing Scans (read_model.rs).
          actions: ['dynamodb:GetItem', 'dynamodb:Query'],
          resources: this.readModelTables(),
        }),
        new iam.PolicyStatement({
          sid: 'ReadModelStatusIndex',
          actions: ['dynamodb:Query'],
          resources: this.readModelTables().map((arn) => `${arn}/index/${STATUS_INDEX}`),
        }),
        new iam.PolicyStatement({
          sid: 'IdempotencyLedger',
          // backend/src/aws/idempotency.rs: claim/complete PutItem (also as a Put of the append's
          // TransactWriteItems, authorized as PutItem), lookup GetItem, release DeleteItem.
          actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem'],
          resources: [this.ledgerTable.tableArn],
          conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [API_LEDGER_KEYS] } },
        }),
        new iam.PolicyStatement({
          sid: 'LiveTablePointer',
          // Reads of the read model go to the table the pointer names (live_table.rs), read-only.
          actions: ['dynamodb:GetItem'],
          resources: [this.ledgerTable.tableArn],
          conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [LIVE_TABLE_POINTER_PK] } },
        }),
        new iam.PolicyStatement({
          sid: 'DocumentsRead',
          // GetObject also signs the presigned download links of GET
          // /orders/{id}/documents/{name} (a link works only while its signer may GetObject),
          // and authorizes the HeadObject before one.
          actions: ['s3:GetObject'],
          resources: [this.documentsBucket.arnForObjects(`${DOCUMENTS_PREFIX}*`)],
        }),
        new iam.PolicyStatement({
          sid: 'DocumentsList',
          actions: ['s3:ListBucket'],
          resources: [this.documentsBucket.bucketArn],
          // documents.rs lists only under orders/<id>/.
          conditions: { StringLike: { 's3:prefix': [`${DOCUMENTS_PREFIX}*`] } },
        }),
      ],
      acknowledgements: [
        this.objectWildcardAck('read the per-order documents listed by GET /orders/{id}/documents'),
        ...this.rebuiltTablesAcks('read (GetItem, Query; the status index by Query)', true),
      ],
    });

    // orders-projector: event table stream -> read model + bus.
    this.projectorFailureQueue = new sqs.Queue(this, 'ProjectorFailureQueue', {
      // Named as `orders aws bootstrap` names it: `orders parked list|replay --backend aws`
      // read the parked stream batches from it (backend/src/aws/parked.rs).
      queueName: `${this.settings.queueNamePrefix}orders-projector-failures`,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.projectorFailureQueue).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SQS3',
      reason: 'This queue is itself the on-failure destination (a dead-letter store) of the projector\'s DynamoDB stream event source; it is alarmed on depth > 0.',
    });

    this.projectorFunction = this.rustFunction('OrdersProjector', {
      crate: 'projector',
      binaryName: 'orders-projector',
      description: 'ordersource projector: event table stream -> read model + EventBridge',
      timeout: TIMEOUTS.projector,
      memorySize: 256,
      logRetention,
      environment: {
        [ENV.readModelTable]: this.readModelTable.tableName,
        // Only for the live-table pointer (which read model table is live after a rebuild).
        [ENV.ledgerTable]: this.ledgerTable.tableName,
        [ENV.eventBus]: this.bus.eventBusName,
        [ENV.eventSource]: this.eventSource,
        ...rustLog,
      },
      statements: [
        new iam.PolicyStatement({
          sid: 'ReadModelWrite',
          // read_model.rs upserts by GetItem + conditional PutItem; no UpdateItem.
          actions: ['dynamodb:GetItem', 'dynamodb:PutItem'],
          resources: this.readModelTables(),
        }),
        new iam.PolicyStatement({
          sid: 'LiveTablePointer',
          // The one ledger item that names the live read model table, read-only.
          actions: ['dynamodb:GetItem'],
          resources: [this.ledgerTable.tableArn],
          conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [LIVE_TABLE_POINTER_PK] } },
        }),
        new iam.PolicyStatement({
          sid: 'PublishToOrdersBus',
          actions: ['events:PutEvents'],
          resources: [this.bus.eventBusArn],
        }),
      ],
      acknowledgements: [{
        id: 'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
        reason: 'dynamodb:ListStreams (added by the stream event source) has no resource-level permissions, so IAM requires "*"; every other stream action is scoped to the event table stream ARN.',
      }, ...this.rebuiltTablesAcks('upsert (GetItem, PutItem)', false)],
    });
    this.projectorFunction.addEventSource(new DynamoEventSource(this.eventsTable, {
      startingPosition: lambda.StartingPosition.TRIM_HORIZON,
      batchSize: PROJECTOR_STREAM.batchSize,
      maxBatchingWindow: PROJECTOR_STREAM.maxBatchingWindow,
      bisectBatchOnError: true,
      reportBatchItemFailures: true,
      retryAttempts: PROJECTOR_STREAM.retryAttempts,
      maxRecordAge: PROJECTOR_STREAM.maxRecordAge,
      parallelizationFactor: PROJECTOR_STREAM.parallelizationFactor,
      onFailure: new SqsDlq(this.projectorFailureQueue),
      // Only event inserts: the event table is append-only, and an item without an eventId
      // is not an event.
      filters: [lambda.FilterCriteria.filter({
        eventName: lambda.FilterRule.isEqual('INSERT'),
        dynamodb: { NewImage: { eventId: { S: lambda.FilterRule.exists() } } },
      })],
    }));

    // ---------------------------------------------------------------- who may publish
    // Only the projector and the operator role (for `orders republish`) may PutEvents on the
    // bus: an explicit Deny for every other principal of any account (identity policies of
    // this account cannot override it), and an Allow for the two.
    if (s.operatorRoleArn) {
      this.operatorRoleArn = s.operatorRoleArn;
    } else {
      this.operatorRole = new iam.Role(this, 'OperatorRole', {
        description: 'ordersource operator: `orders republish` (reads the event table, publishes on the bus)',
        assumedBy: new iam.AccountRootPrincipal(),
      });
      this.operatorRole.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: 'RepublishToOrdersBus',
        actions: ['events:PutEvents'],
        resources: [this.bus.eventBusArn],
      }));
      this.operatorRole.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: 'ReadEventStore',
        actions: ['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:Scan', 'dynamodb:BatchGetItem'],
        resources: [this.eventsTable.tableArn],
      }));
      this.operatorRoleArn = this.operatorRole.roleArn;
    }
    const publishers = [this.projectorFunction.role!.roleArn, this.operatorRoleArn];
    this.bus.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'OnlyProjectorAndOperatorPublish',
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ['events:PutEvents'],
      resources: [this.bus.eventBusArn],
      conditions: {
        ArnNotEquals: { 'aws:PrincipalArn': publishers },
        // Calls made by principals (EventBridge's own archive replay carries none).
        Null: { 'aws:PrincipalArn': 'false' },
      },
    }));
    this.bus.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'ProjectorAndOperatorPublish',
      principals: publishers.map((arn) => new iam.ArnPrincipal(arn)),
      actions: ['events:PutEvents'],
      resources: [this.bus.eventBusArn],
    }));

    // orders-handler: one function per route, each fed by its own queue.
    this.routeResources = this.routeTable.routes.map((route) => this.createRoute(route, logRetention, rustLog));

    // orders-intake: commands from the web, mobile and ATM channels on the intake queue.
    this.intakeResources = this.createIntake(logRetention, rustLog);

    // ---------------------------------------------------------------- HTTP API
    const { api, stage } = this.createHttpApi(logRetention);
    this.api = api;
    this.apiStage = stage;
    if (s.consoleEnabled) this.enableConsole();

    // ---------------------------------------------------------------- alarms + dashboard
    this.createAlarms();
    this.createDashboard();

    new CfnOutput(this, 'ApiUrl', { value: stage.url, description: 'Base URL of the orders HTTP API' });
    new CfnOutput(this, 'EventBusName', { value: this.bus.eventBusName });
    new CfnOutput(this, 'OperatorRoleArn', { value: this.operatorRoleArn, description: 'The role that may publish on the bus besides the projector (orders republish)' });
    new CfnOutput(this, 'EventsTableName', { value: this.eventsTable.tableName });
    new CfnOutput(this, 'ReadModelTableName', { value: this.readModelTable.tableName });
    new CfnOutput(this, 'LedgerTableName', { value: this.ledgerTable.tableName });
    new CfnOutput(this, 'DocumentsBucketName', { value: this.documentsBucket.bucketName });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.alarmTopic.topicArn });
  }

  /** A Rust Lambda from this workspace with its own role and log group. */
  private rustFunction(id: string, opts: {
    crate: string;
    binaryName: string;
    description: string;
    timeout: Duration;
    memorySize: number;
    logRetention: logs.RetentionDays;
    environment: Record<string, string>;
    statements: iam.PolicyStatement[];
    acknowledgements?: NagAck[];
  }): lambda.Function {
    const logGroup = new logs.LogGroup(this, `${id}Logs`, {
      retention: opts.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // Own role, no managed policies: logs go to this function's log group only.
    const role = new iam.Role(this, `${id}Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of ${opts.binaryName} (${id})`,
    });
    role.addToPrincipalPolicy(new iam.PolicyStatement({
      sid: 'OwnLogGroup',
      actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
      resources: [logGroup.logGroupArn],
    }));
    for (const st of opts.statements) role.addToPrincipalPolicy(st);
    for (const ack of withXrayAck(opts.acknowledgements ?? [])) Validations.of(role).acknowledge(ack);

    const fn = new RustFunction(this, id, {
      manifestPath: path.join(REPO_ROOT, opts.crate, 'Cargo.toml'),
      binaryName: opts.binaryName,
      runtime: 'provided.al2023',
      architecture: lambda.Architecture.ARM_64,
      // The workspace's size profile (strip, fat LTO, one codegen unit): smaller zips and
      // faster cold starts than `release`; figures in docs/performance.md.
      bundling: { profile: 'lambda' },
      description: opts.description,
      timeout: opts.timeout,
      memorySize: opts.memorySize,
      role,
      logGroup,
      // The Rust mains log JSON when Lambda says the format is JSON (AWS_LAMBDA_LOG_FORMAT).
      loggingFormat: lambda.LoggingFormat.JSON,
      environment: opts.environment,
      // X-Ray: each invocation is a segment; the API main records its trace header in the
      // events, which the projector hands to EventBridge and EventBridge to the queues.
      tracing: lambda.Tracing.ACTIVE,
    });
    // Lambda's L2 makes the function depend on the whole role construct: the role itself
    // (already implied by the GetAtt of its ARN; cfn-lint W3005) and its default policy (which
    // must exist before the function's event source mappings are validated). Keep the latter.
    const policy = role.node.tryFindChild('DefaultPolicy') as iam.Policy | undefined;
    if (policy) {
      (fn.node.defaultChild as lambda.CfnFunction).addOverride('DependsOn',
        [this.getLogicalId(policy.node.defaultChild as CfnElement)]);
    }
    return fn;
  }

  /**
   * cdk-nag acknowledgement of the `<documents bucket ARN>/orders/*` object resource (IAM5):
   * the orders' documents, reached with actions listed one by one.
   */
  private objectWildcardAck(why: string, prefix: string = DOCUMENTS_PREFIX): NagAck {
    const logicalId = this.getLogicalId(this.documentsBucket.node.defaultChild as CfnElement);
    const what = prefix === DOCUMENTS_PREFIX ? 'the orders\' documents' : 'the archived intake messages';
    return {
      id: `AwsSolutions::AwsSolutions-IAM5[Resource::<${logicalId}.Arn>/${prefix}*]`,
      reason: `Object actions on ${what} (bucket ARN + "/${prefix}*") to ${why}; the actions are listed one by one, none is a wildcard.`,
    };
  }

  /**
   * The read model table and the tables `orders rebuild` creates beside it
   * (`<table name>-rebuild-<unix ms>`), one of which the live-table pointer in the ledger
   * names after a rebuild: the functions that use the read model must reach whichever is live.
   */
  private readModelTables(): string[] {
    return [this.readModelTable.tableArn, `${this.readModelTable.tableArn}${REBUILT_TABLES_SUFFIX}`];
  }

  /** cdk-nag acknowledgements (IAM5) of the rebuilt read model tables' name pattern. */
  private rebuiltTablesAcks(what: string, statusIndex: boolean): NagAck[] {
    const logicalId = this.getLogicalId(this.readModelTable.node.defaultChild as CfnElement);
    const reason = `\`orders rebuild\` builds the read model into new tables named after this one (\`<name>-rebuild-<unix ms>\`) and swaps by a pointer, since DynamoDB tables cannot be renamed; the function must ${what} whichever is live. The pattern covers only those tables; the actions are listed one by one.`;
    const pattern = `<${logicalId}.Arn>${REBUILT_TABLES_SUFFIX}`;
    const resources = statusIndex ? [pattern, `${pattern}/index/${STATUS_INDEX}`] : [pattern];
    return resources.map((r) => ({ id: `AwsSolutions::AwsSolutions-IAM5[Resource::${r}]`, reason }));
  }

  /**
   * The console in the API function (consoleEnabled): it serves the console's routes, and
   * reads each route queue's and the intake queue's depth and dead letters and redrives them
   * (the `Queues` port: GetQueueAttributes, Receive/Delete/ChangeMessageVisibility on the
   * DLQ, SendMessage to the queue).
   */
  private enableConsole(): void {
    const fn = this.apiFunction;
    fn.addEnvironment(ENV.console, 'enabled');
    fn.addEnvironment(ENV.queuePrefix, this.settings.queueNamePrefix);
    for (const r of [...this.routeResources, this.intakeResources]) {
      r.queue.grant(fn, 'sqs:GetQueueUrl', 'sqs:GetQueueAttributes');
      r.queue.grantSendMessages(fn);
      r.dlq.grantConsumeMessages(fn);
    }
  }

  /**
   * The intake (routes.json's `intake`): its queue + DLQ and orders-intake, fed by the queue
   * with partial batch responses. The function runs the API's commands (the event table as
   * the API uses it, the ledger under `intake/` only), archives each accepted message under
   * `intake/` in the documents bucket (PutObject only), and sends invalid messages to the
   * DLQ itself with the reason (the queue's URL and redrive policy name it).
   */
  private createIntake(logRetention: logs.RetentionDays, rustLog: Record<string, string>): IntakeResources {
    const s = this.settings;
    const intake = this.routeTable.intake;
    const dlq = new sqs.Queue(this, 'Intake-Dlq', {
      queueName: `${s.queueNamePrefix}${intake.deadLetterQueue}`,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    const queue = new sqs.Queue(this, 'Intake-Queue', {
      queueName: `${s.queueNamePrefix}${intake.queue}`,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(intake.visibilityTimeoutSeconds),
      retentionPeriod: Duration.days(14),
      deadLetterQueue: { queue: dlq, maxReceiveCount: intake.maxReceiveCount },
    });
    const fn = this.rustFunction('OrdersIntake', {
      crate: 'command-api',
      binaryName: 'orders-intake',
      description: `ordersource intake: commands from the channels on ${intake.queue}`,
      timeout: handlerTimeout(intake),
      memorySize: 256,
      logRetention,
      environment: {
        [ENV.eventsTable]: this.eventsTable.tableName,
        [ENV.ledgerTable]: this.ledgerTable.tableName,
        [ENV.documentsBucket]: this.documentsBucket.bucketName,
        [ENV.queuePrefix]: s.queueNamePrefix,
        ...rustLog,
      },
      statements: [
        new iam.PolicyStatement({
          sid: 'EventStore',
          // As the API: appends are (conditional) PutItem, reads are Query (event_store.rs).
          actions: ['dynamodb:Query', 'dynamodb:PutItem'],
          resources: [this.eventsTable.tableArn],
        }),
        new iam.PolicyStatement({
          sid: 'IntakeLedger',
          // Claim/complete PutItem, lookup GetItem, release DeleteItem (idempotency.rs), on
          // the intake's own keys only.
          actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem'],
          resources: [this.ledgerTable.tableArn],
          conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [INTAKE_LEDGER_KEYS] } },
        }),
        new iam.PolicyStatement({
          sid: 'IntakeArchive',
          actions: ['s3:PutObject'],
          resources: [this.documentsBucket.arnForObjects(`${INTAKE_ARCHIVE_PREFIX}*`)],
        }),
        new iam.PolicyStatement({
          sid: 'IntakeQueueLookup',
          // queues.rs dead_letter: the intake queue's URL, then its redrive policy's DLQ.
          actions: ['sqs:GetQueueUrl', 'sqs:GetQueueAttributes'],
          resources: [queue.queueArn],
        }),
        new iam.PolicyStatement({
          sid: 'IntakeDeadLetter',
          actions: ['sqs:GetQueueUrl', 'sqs:SendMessage'],
          resources: [dlq.queueArn],
        }),
      ],
      acknowledgements: [this.objectWildcardAck('archive each accepted intake message as received', INTAKE_ARCHIVE_PREFIX)],
    });
    fn.addEventSource(new SqsEventSource(queue, {
      batchSize: intake.batchSize,
      reportBatchItemFailures: true,
    }));
    return { intake, queue, dlq, fn };
  }

  /** One route: queue + DLQ, the rule that feeds the queue, the handler function. */
  private createRoute(route: Route, logRetention: logs.RetentionDays, rustLog: Record<string, string>): RouteResources {
    const s = this.settings;
    const id = `Route-${route.status}`;
    const dlq = new sqs.Queue(this, `${id}-Dlq`, {
      queueName: `${s.queueNamePrefix}${route.deadLetterQueue}`,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    const queue = new sqs.Queue(this, `${id}-Queue`, {
      queueName: `${s.queueNamePrefix}${route.queue}`,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(route.visibilityTimeoutSeconds),
      // As long as its DLQ: a backlog behind a stalled handler is not dropped after 4 days.
      retentionPeriod: Duration.days(14),
      deadLetterQueue: { queue: dlq, maxReceiveCount: route.maxReceiveCount },
    });

    const rule = new events.Rule(this, `${id}-Rule`, {
      eventBus: this.bus,
      ruleName: route.rule,
      description: `Order events whose order status is ${route.status} -> ${route.queue} (from events-schema/routes.json)`,
      eventPattern: patternFor(route, this.routeTable.source, this.eventSource) as events.EventPattern,
    });
    // The SqsQueue target adds the queue policy statement allowing events.amazonaws.com to
    // send with aws:SourceArn = this rule only. Failed deliveries go to the route's DLQ.
    rule.addTarget(new targets.SqsQueue(queue, {
      deadLetterQueue: dlq,
      retryAttempts: 185,
      maxEventAge: Duration.hours(24),
    }));

    const readsHistory = HISTORY_HANDLERS.includes(route.handler);
    const fn = this.rustFunction(`Handler-${route.handler}`, {
      crate: 'handlers',
      binaryName: 'orders-handler',
      description: `ordersource handler for status ${route.status} (queue ${route.queue})`,
      timeout: handlerTimeout(route),
      memorySize: 256,
      logRetention,
      environment: {
        [ENV.ledgerTable]: this.ledgerTable.tableName,
        [ENV.documentsBucket]: this.documentsBucket.bucketName,
        [ENV.handler]: route.handler,
        ...(readsHistory ? { [ENV.eventsTable]: this.eventsTable.tableName } : {}),
        ...rustLog,
      },
      statements: [
        ...(readsHistory ? [new iam.PolicyStatement({
          sid: 'EventHistory',
          // event_store.rs events(): a Query of one order's partition, read only.
          actions: ['dynamodb:Query'],
          resources: [this.eventsTable.tableArn],
        })] : []),
        new iam.PolicyStatement({
          sid: 'HandlerLedger',
          // DeleteItem: a handler that fails after claiming an event releases its claim.
          actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem'],
          resources: [this.ledgerTable.tableArn],
          conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [handlerLedgerKeys(route.handler)] } },
        }),
        new iam.PolicyStatement({
          sid: 'DocumentsWrite',
          // handlers only write documents (documents.rs put); reading them is the API's.
          actions: ['s3:PutObject'],
          resources: [this.documentsBucket.arnForObjects(`${DOCUMENTS_PREFIX}*`)],
        }),
      ],
      acknowledgements: [this.objectWildcardAck(`write the ${route.status} documents of each order`)],
    });
    fn.addEventSource(new SqsEventSource(queue, {
      batchSize: route.batchSize,
      reportBatchItemFailures: true,
    }));
    return { route, rule, queue, dlq, fn };
  }

  /**
   * The registry schema of the bus's events, from the checked-in detail schema. If that file
   * does not exist the stack cannot publish its contract, so synth fails and says so.
   */
  private addEventSchema(file: string): void {
    const detail = readDetailSchema(file);
    if (detail === undefined) {
      throw new Error(`${file} is missing: it is generated from the Rust types (events-schema) and checked in; the CDK app publishes it to the schema registry.`);
    }
    const registry = new eventschemas.CfnRegistry(this, 'SchemaRegistry', {
      registryName: this.settings.busName,
      description: `Event contracts published on the ${this.settings.busName} bus`,
    });
    new eventschemas.CfnSchema(this, 'OrderEventSchema', {
      registryName: registry.attrRegistryName,
      schemaName: `${this.eventSource}@OrderEvent`,
      type: 'JSONSchemaDraft4',
      description: 'An order event (OrderPlaced, OrderStarted, OrderCompleted, OrderCanceled, OrderDetailsRevised) with detail = { event, order }.',
      content: JSON.stringify(eventSchemaDraft4(detail, this.eventSource)),
    });
  }

  /** SNS topic for alarms, encrypted with its own KMS key that CloudWatch may use. */
  private createAlarmTopic(): sns.Topic {
    const key = new kms.Key(this, 'AlarmTopicKey', {
      description: 'Encrypts the ordersource alarm topic',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
      policy: new iam.PolicyDocument({
        statements: [
          new iam.PolicyStatement({
            sid: 'AccountAdministersKeyThroughIam',
            principals: [new iam.AccountRootPrincipal()],
            // Listed one by one (no kms:*): administration plus use through IAM policies.
            actions: [
              'kms:CancelKeyDeletion', 'kms:CreateAlias', 'kms:CreateGrant', 'kms:Decrypt',
              'kms:DeleteAlias', 'kms:DescribeKey', 'kms:DisableKey', 'kms:DisableKeyRotation',
              'kms:EnableKey', 'kms:EnableKeyRotation', 'kms:Encrypt', 'kms:GenerateDataKey',
              'kms:GetKeyPolicy', 'kms:GetKeyRotationStatus', 'kms:ListGrants',
              'kms:ListKeyRotations', 'kms:ListResourceTags', 'kms:PutKeyPolicy',
              'kms:ReEncryptFrom', 'kms:ReEncryptTo', 'kms:RetireGrant', 'kms:RevokeGrant',
              'kms:RotateKeyOnDemand', 'kms:ScheduleKeyDeletion', 'kms:TagResource',
              'kms:UntagResource', 'kms:UpdateAlias', 'kms:UpdateKeyDescription',
            ],
            resources: ['*'], // in a key policy "*" means this key
          }),
          new iam.PolicyStatement({
            sid: 'CloudWatchAlarmsPublish',
            principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
            actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
            resources: ['*'], // in a key policy "*" means this key
            conditions: { StringEquals: { 'aws:SourceAccount': this.account } },
          }),
        ],
      }),
    });
    return new sns.Topic(this, 'AlarmTopic', {
      displayName: 'ordersource alarms',
      masterKey: key,
      enforceSSL: true,
    });
  }

  private createHttpApi(logRetention: logs.RetentionDays): { api: apigw.HttpApi; stage: apigw.HttpStage } {
    const s = this.settings;
    const integration = new HttpLambdaIntegration('OrdersApiIntegration', this.apiFunction, {
      payloadFormatVersion: apigw.PayloadFormatVersion.VERSION_2_0,
    });
    const authorizer = s.jwtIssuer
      ? new HttpJwtAuthorizer('JwtAuthorizer', s.jwtIssuer, {
        jwtAudience: [...s.jwtAudience],
        identitySource: ['$request.header.Authorization'],
      })
      : undefined;
    const api = new apigw.HttpApi(this, 'HttpApi', {
      description: 'ordersource command API',
      createDefaultStage: false,
      defaultIntegration: integration,
      defaultAuthorizer: authorizer,
      // $default (every method but GET, below) is a write: it needs the write scope.
      defaultAuthorizationScopes: authorizer ? [s.jwtWriteScope] : undefined,
      corsPreflight: s.corsOrigins.length > 0 ? {
        allowOrigins: [...s.corsOrigins],
        allowMethods: [
          apigw.CorsHttpMethod.GET, apigw.CorsHttpMethod.POST, apigw.CorsHttpMethod.PUT,
          apigw.CorsHttpMethod.OPTIONS,
        ],
        allowHeaders: ['Content-Type', 'Authorization', 'Idempotency-Key', 'If-Match'],
        exposeHeaders: ['ETag', 'Location'],
        maxAge: Duration.hours(1),
      } : undefined,
    });
    // Liveness and the API description stay public even with the JWT authorizer on.
    const publicRoutes = ['/health', '/openapi.json'].flatMap((p) => api.addRoutes({
      path: p,
      methods: [apigw.HttpMethod.GET],
      integration,
      authorizer: new apigw.HttpNoneAuthorizer(),
      // Not the default (write) scope: these routes have no authorizer at all.
      authorizationScopes: [],
    }));
    // Reads: GET of any path needs the read scope (more specific routes such as GET /health win).
    if (authorizer) {
      api.addRoutes({
        path: '/{proxy+}',
        methods: [apigw.HttpMethod.GET],
        integration,
        authorizer,
        authorizationScopes: [s.jwtReadScope],
      });
    }
    if (s.consoleEnabled) {
      // The operator console (docs/console.md): its pages are reads, its actions writes,
      // each with the API's scope. GET / is not matched by /{proxy+}.
      for (const path of ['/', '/console', '/console/{proxy+}']) {
        api.addRoutes({
          path,
          methods: [apigw.HttpMethod.GET],
          integration,
          authorizer,
          authorizationScopes: authorizer ? [s.jwtReadScope] : undefined,
        });
      }
      api.addRoutes({
        path: '/console/{proxy+}',
        methods: [apigw.HttpMethod.POST],
        integration,
        authorizer,
        authorizationScopes: authorizer ? [s.jwtWriteScope] : undefined,
      });
    }
    if (authorizer) {
      for (const route of publicRoutes) {
        Validations.of(route).acknowledge({
          id: 'AwsSolutions::AwsSolutions-APIG4',
          reason: 'GET /health and GET /openapi.json are public on purpose (liveness probe, API description; no order data). Every other route uses the JWT authorizer.',
        });
      }
    } else {
      Validations.of(api).acknowledge({
        id: 'AwsSolutions::AwsSolutions-APIG4',
        reason: 'The JWT authorizer is off only because allowAnonymous=true was given explicitly (a trial deployment); without it the synth refuses a stack lacking jwtIssuer (README).',
      });
    }

    const accessLogs = new logs.LogGroup(this, 'HttpApiAccessLogs', {
      retention: logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const stage = new apigw.HttpStage(this, 'HttpApiStage', {
      httpApi: api,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: s.throttleRateLimit, burstLimit: s.throttleBurstLimit },
      accessLogSettings: {
        destination: new apigw.LogGroupLogDestination(accessLogs),
        format: AccessLogFormat.custom(JSON.stringify({
          requestId: '$context.requestId',
          ip: '$context.identity.sourceIp',
          requestTime: '$context.requestTime',
          httpMethod: '$context.httpMethod',
          routeKey: '$context.routeKey',
          path: '$context.path',
          status: '$context.status',
          protocol: '$context.protocol',
          responseLength: '$context.responseLength',
          latency: '$context.responseLatency',
          integrationError: '$context.integrationErrorMessage',
          authorizerError: '$context.authorizer.error',
        })),
      },
    });
    return { api, stage };
  }

  private createAlarms(): void {
    const action = new SnsAction(this.alarmTopic);
    const alarm = (id: string, metric: cloudwatch.IMetric, description: string, threshold = 0,
      evaluationPeriods = 1) => {
      const a = new cloudwatch.Alarm(this, id, {
        metric,
        threshold,
        evaluationPeriods,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      a.addAlarmAction(action);
      a.addOkAction(action);
      return a;
    };
    const minute = Duration.minutes(1);

    for (const r of this.routeResources) {
      alarm(`Route-${r.route.status}-DlqDepth`,
        r.dlq.metricApproximateNumberOfMessagesVisible({ period: minute, statistic: 'Maximum' }),
        `Messages in ${r.route.deadLetterQueue}: ${r.route.status} events the handler could not process (or EventBridge could not deliver).`);
    }
    alarm('Intake-DlqDepth',
      this.intakeResources.dlq.metricApproximateNumberOfMessagesVisible({ period: minute, statistic: 'Maximum' }),
      `Messages in ${this.intakeResources.intake.deadLetterQueue}: intake commands refused as invalid (the reason is each message's \`reason\` attribute) or failing past their retries. \`orders dlq list --queue ${this.intakeResources.intake.queue} --backend aws\`.`);
    alarm('ProjectorFailureQueueDepth',
      this.projectorFailureQueue.metricApproximateNumberOfMessagesVisible({ period: minute, statistic: 'Maximum' }),
      'Stream batches the projector gave up on: the read model and the bus are missing events. Run `orders rebuild` / `orders republish` after fixing.');
    alarm('ProjectorIteratorAge',
      this.projectorFunction.metric('IteratorAge', { period: minute, statistic: 'Maximum' }),
      'The projector is more than 60 s behind the event table stream.', 60_000, 3);

    const functions: [string, lambda.Function][] = [
      ['OrdersApi', this.apiFunction],
      ['OrdersProjector', this.projectorFunction],
      ...this.routeResources.map((r): [string, lambda.Function] => [`Handler-${r.route.handler}`, r.fn]),
      ['OrdersIntake', this.intakeResources.fn],
    ];
    for (const [name, fn] of functions) {
      alarm(`${name}-Errors`, fn.metricErrors({ period: minute, statistic: 'Sum' }),
        `${name} invocations ended in an error.`);
      alarm(`${name}-Throttles`, fn.metricThrottles({ period: minute, statistic: 'Sum' }),
        `${name} invocations were throttled.`);
    }
    alarm('HttpApi5xx', this.api.metricServerError({ period: minute, statistic: 'Sum' }),
      'The HTTP API answered with 5xx.');
  }

  private createDashboard(): void {
    const minute = Duration.minutes(1);
    const dash = new cloudwatch.Dashboard(this, 'PipelineDashboard', {
      dashboardName: `${this.stackName}-pipeline`,
      defaultInterval: Duration.hours(3),
    });
    dash.addWidgets(new cloudwatch.TextWidget({
      markdown: '# ordersource pipeline\nHTTP API -> orders-api -> event table -> stream -> orders-projector -> read model + bus -> rule per status -> queue -> orders-handler',
      width: 24, height: 2,
    }));
    dash.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'HTTP API requests / 4xx / 5xx',
        left: [
          this.api.metricCount({ period: minute, statistic: 'Sum' }),
          this.api.metricClientError({ period: minute, statistic: 'Sum' }),
          this.api.metricServerError({ period: minute, statistic: 'Sum' }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'HTTP API latency (p50, p99)',
        left: [
          this.api.metricLatency({ period: minute, statistic: 'p50' }),
          this.api.metricLatency({ period: minute, statistic: 'p99' }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Projector iterator age (max, ms)',
        left: [this.projectorFunction.metric('IteratorAge', { period: minute, statistic: 'Maximum' })],
        width: 8,
      }),
    );
    const allFns = [this.apiFunction, this.projectorFunction, ...this.routeResources.map((r) => r.fn), this.intakeResources.fn];
    dash.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Lambda errors',
        left: allFns.map((f) => f.metricErrors({ period: minute, statistic: 'Sum' })),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Lambda throttles',
        left: allFns.map((f) => f.metricThrottles({ period: minute, statistic: 'Sum' })),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Lambda duration (p99)',
        left: allFns.map((f) => f.metricDuration({ period: minute, statistic: 'p99' })),
        width: 8,
      }),
    );
    dash.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Route queues: visible messages',
        left: this.routeResources.map((r) => r.queue.metricApproximateNumberOfMessagesVisible({ period: minute, statistic: 'Maximum', label: r.route.queue })),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Route queues: oldest message age (s)',
        left: this.routeResources.map((r) => r.queue.metricApproximateAgeOfOldestMessage({ period: minute, statistic: 'Maximum', label: r.route.queue })),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Dead letters',
        left: [
          ...this.routeResources.map((r) => r.dlq.metricApproximateNumberOfMessagesVisible({ period: minute, statistic: 'Maximum', label: r.route.deadLetterQueue })),
          this.projectorFailureQueue.metricApproximateNumberOfMessagesVisible({ period: minute, statistic: 'Maximum', label: 'projector on-failure' }),
        ],
        width: 8,
      }),
    );
    dash.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Bus rules: matched / failed invocations',
        left: this.routeResources.map((r) => new cloudwatch.Metric({
          namespace: 'AWS/Events', metricName: 'TriggeredRules', period: minute, statistic: 'Sum',
          dimensionsMap: { EventBusName: this.bus.eventBusName, RuleName: r.rule.ruleName },
          label: `${r.route.rule} triggered`,
        })),
        right: this.routeResources.map((r) => new cloudwatch.Metric({
          namespace: 'AWS/Events', metricName: 'FailedInvocations', period: minute, statistic: 'Sum',
          dimensionsMap: { EventBusName: this.bus.eventBusName, RuleName: r.rule.ruleName },
          label: `${r.route.rule} failed`,
        })),
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Event table writes / stream records',
        left: [this.eventsTable.metricConsumedWriteCapacityUnits({ period: minute, statistic: 'Sum' })],
        right: [this.projectorFunction.metricInvocations({ period: minute, statistic: 'Sum' })],
        width: 12,
      }),
    );
    // The service's own metrics (EMF, written by the Rust mains; backend/src/emf.rs).
    dash.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Commands by command and outcome',
        left: [emfSearch('Commands', ['Command', 'Outcome'], '')],
        width: 6,
      }),
      new cloudwatch.GraphWidget({
        title: 'Duplicates (idempotent replays, redeliveries)',
        left: [emfSearch('Duplicates', ['Kind'], '')],
        width: 6,
      }),
      new cloudwatch.GraphWidget({
        title: 'Documents written by handler',
        left: [emfSearch('DocumentsWritten', ['Handler'], '')],
        width: 6,
      }),
      new cloudwatch.GraphWidget({
        title: 'Parked stream records',
        left: [
          new cloudwatch.Metric({
            namespace: EMF_NAMESPACE, metricName: 'ParkedRecords', period: minute, statistic: 'Sum',
            label: 'parked (EMF)',
          }),
          // On AWS, Lambda itself parks a batch it gave up on: a message in the on-failure queue.
          this.projectorFailureQueue.metricNumberOfMessagesSent({ period: minute, statistic: 'Sum', label: 'batches sent to the on-failure queue' }),
        ],
        width: 6,
      }),
    );
  }
}
