/**
 * Template assertions: every setting issue 6 asks for, read from the synthesized template.
 * Expectations about routes are derived from events-schema/routes.json, so adding a route
 * there without the stack following fails here.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import {
  LIVE_TABLE_POINTER_PK, REBUILT_TABLES_SUFFIX, STATUS_INDEX,
} from '../lib/ordersource-stack';
import {
  asArray, functionsOf, handlerFunction, ofType, queueNamed, refId, refsIn, roleStatements, ROUTES, synth,
} from './helpers';

const { json, template } = synth();
const N = ROUTES.routes.length;

const tableWithKey = (pk: string, sk?: string) => {
  const found = ofType(json, 'AWS::DynamoDB::Table').filter(([, r]) => {
    const ks = r.Properties.KeySchema;
    return ks[0].AttributeName === pk && (sk ? ks[1]?.AttributeName === sk : ks.length === 1)
      && (pk !== 'orderId' || sk || r.Properties.GlobalSecondaryIndexes);
  });
  assert.equal(found.length, 1, `one table with key ${pk}/${sk ?? '-'}`);
  return found[0];
};
const [eventsTableId, eventsTable] = tableWithKey('orderId', 'version');
const [readModelId, readModel] = tableWithKey('orderId');
const [ledgerId, ledger] = tableWithKey('pk');
const busIdOf = () => ofType(json, 'AWS::Events::EventBus')[0][0];

describe('event table', () => {
  it('is keyed orderId (S) / version (N), on demand', () => {
    const p = eventsTable.Properties;
    assert.deepEqual(p.KeySchema, [
      { AttributeName: 'orderId', KeyType: 'HASH' }, { AttributeName: 'version', KeyType: 'RANGE' }]);
    assert.deepEqual(new Set(p.AttributeDefinitions.map((a: any) => `${a.AttributeName}:${a.AttributeType}`)),
      new Set(['orderId:S', 'version:N']));
    assert.equal(p.BillingMode, 'PAY_PER_REQUEST');
  });
  it('streams NEW_IMAGE, has PITR and encryption, is retained', () => {
    const p = eventsTable.Properties;
    assert.deepEqual(p.StreamSpecification, { StreamViewType: 'NEW_IMAGE' });
    assert.equal(p.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled, true);
    assert.equal(p.SSESpecification.SSEEnabled, true);
    assert.equal(eventsTable.DeletionPolicy, 'Retain');
    assert.equal(eventsTable.UpdateReplacePolicy, 'Retain');
    assert.equal(p.DeletionProtectionEnabled, true);
  });
});

describe('read model and ledger tables', () => {
  it('read model: PK orderId, GSI status-index (status S, createdKey S, ALL), PITR, encrypted', () => {
    const p = readModel.Properties;
    assert.deepEqual(p.KeySchema, [{ AttributeName: 'orderId', KeyType: 'HASH' }]);
    assert.equal(p.BillingMode, 'PAY_PER_REQUEST');
    assert.deepEqual(p.GlobalSecondaryIndexes, [{
      IndexName: 'status-index',
      KeySchema: [{ AttributeName: 'status', KeyType: 'HASH' }, { AttributeName: 'createdKey', KeyType: 'RANGE' }],
      Projection: { ProjectionType: 'ALL' },
    }]);
    assert.equal(STATUS_INDEX, 'status-index');
    assert.deepEqual(new Set(p.AttributeDefinitions.map((a: any) => `${a.AttributeName}:${a.AttributeType}`)),
      new Set(['orderId:S', 'status:S', 'createdKey:S']));
    assert.equal(p.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled, true);
    assert.equal(p.SSESpecification.SSEEnabled, true);
    assert.equal(p.StreamSpecification, undefined);
  });
  it('ledger: PK pk (S), TTL on expiresAt, PITR, encrypted', () => {
    const p = ledger.Properties;
    assert.deepEqual(p.KeySchema, [{ AttributeName: 'pk', KeyType: 'HASH' }]);
    assert.deepEqual(p.AttributeDefinitions, [{ AttributeName: 'pk', AttributeType: 'S' }]);
    assert.deepEqual(p.TimeToLiveSpecification, { AttributeName: 'expiresAt', Enabled: true });
    assert.equal(p.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled, true);
    assert.equal(p.SSESpecification.SSEEnabled, true);
  });
  it('there are exactly three tables', () => {
    assert.equal(ofType(json, 'AWS::DynamoDB::Table').length, 3);
  });
});

describe('documents bucket', () => {
  const documents = ofType(json, 'AWS::S3::Bucket').filter(([, r]) => r.Properties.VersioningConfiguration);
  it('exists once, SSE, versioned, public access blocked, access logged', () => {
    assert.equal(documents.length, 1);
    const p = documents[0][1].Properties;
    assert.equal(p.VersioningConfiguration.Status, 'Enabled');
    assert.equal(p.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm, 'AES256');
    assert.deepEqual(p.PublicAccessBlockConfiguration, {
      BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true });
    assert.ok(refId(p.LoggingConfiguration.DestinationBucketName), 'server access logs go to a bucket of the stack');
  });
  it('denies every request that is not over TLS', () => {
    const id = documents[0][0];
    const policy = ofType(json, 'AWS::S3::BucketPolicy').find(([, r]) => refId(r.Properties.Bucket) === id);
    assert.ok(policy);
    const st = asArray(policy[1].Properties.PolicyDocument.Statement);
    assert.ok(st.some((s: any) => s.Effect === 'Deny' && s.Condition?.Bool?.['aws:SecureTransport'] === 'false'));
  });
  it('every bucket of the stack is encrypted, private and TLS-only', () => {
    for (const [id, b] of ofType(json, 'AWS::S3::Bucket')) {
      assert.ok(b.Properties.BucketEncryption, id);
      assert.equal(b.Properties.PublicAccessBlockConfiguration.BlockPublicPolicy, true, id);
      assert.ok(ofType(json, 'AWS::S3::BucketPolicy').some(([, p]) => refId(p.Properties.Bucket) === id
        && asArray(p.Properties.PolicyDocument.Statement).some((s: any) => s.Condition?.Bool?.['aws:SecureTransport'] === 'false')), id);
    }
  });
});

describe('Lambda functions', () => {
  const fns = ofType(json, 'AWS::Lambda::Function');
  it(`are orders-api, orders-projector, one orders-handler per route and orders-intake (${3 + N})`, () => {
    assert.equal(fns.length, 3 + N);
    assert.equal(functionsOf(json, 'orders-intake').length, 1);
    assert.equal(functionsOf(json, 'orders-api').length, 1);
    assert.equal(functionsOf(json, 'orders-projector').length, 1);
    assert.equal(functionsOf(json, 'orders-handler').length, N);
  });
  it('are all arm64 on provided.al2023 with the bootstrap handler and JSON logs', () => {
    for (const [id, f] of fns) {
      assert.deepEqual(f.Properties.Architectures, ['arm64'], id);
      assert.equal(f.Properties.Runtime, 'provided.al2023', id);
      assert.equal(f.Properties.Handler, 'bootstrap', id);
      assert.equal(f.Properties.LoggingConfig?.LogFormat, 'JSON', id);
    }
  });
  it('each has its own role and its own log group', () => {
    const roles = fns.map(([, f]) => refId(f.Properties.Role));
    assert.equal(new Set(roles).size, fns.length);
    const logGroups = fns.map(([, f]) => refId(f.Properties.LoggingConfig?.LogGroup));
    assert.ok(logGroups.every((g) => g && json.Resources[g].Type === 'AWS::Logs::LogGroup'));
    assert.equal(new Set(logGroups).size, fns.length);
  });
  it('get only the environment variables they need', () => {
    const env = (f: any) => f.Properties.Environment.Variables;
    const [, api] = functionsOf(json, 'orders-api')[0];
    assert.deepEqual(Object.keys(env(api)).sort(), [
      'ORDERS_DOCUMENTS_BUCKET', 'ORDERS_DOCUMENT_LINK_EXPIRY_SECONDS', 'ORDERS_EVENTS_TABLE', 'ORDERS_LEDGER_TABLE',
      'ORDERS_READ_MODEL_TABLE', 'RUST_LOG']);
    assert.equal(refId(env(api).ORDERS_EVENTS_TABLE), eventsTableId);
    // Presigned document links live 15 minutes by default.
    assert.equal(env(api).ORDERS_DOCUMENT_LINK_EXPIRY_SECONDS, '900');
    assert.equal(refId(env(api).ORDERS_READ_MODEL_TABLE), readModelId);
    assert.equal(refId(env(api).ORDERS_LEDGER_TABLE), ledgerId);
    assert.equal(env(api).RUST_LOG, 'info');

    const [, projector] = functionsOf(json, 'orders-projector')[0];
    assert.deepEqual(Object.keys(env(projector)).sort(), [
      'ORDERS_EVENT_BUS', 'ORDERS_EVENT_SOURCE', 'ORDERS_LEDGER_TABLE', 'ORDERS_READ_MODEL_TABLE', 'RUST_LOG']);
    assert.equal(env(projector).ORDERS_EVENT_SOURCE, ROUTES.source);
    assert.equal(refId(env(projector).ORDERS_READ_MODEL_TABLE), readModelId);
    // The ledger holds the live-table pointer (which read model table is live after a rebuild).
    assert.equal(refId(env(projector).ORDERS_LEDGER_TABLE), ledgerId);
    const [busId] = ofType(json, 'AWS::Events::EventBus')[0];
    assert.equal(refId(env(projector).ORDERS_EVENT_BUS), busId);

    for (const route of ROUTES.routes) {
      const [, h] = handlerFunction(json, route.handler);
      // The invoice (completed) reads the order's status history from the event table.
      const history = route.handler === 'completed' ? ['ORDERS_EVENTS_TABLE'] : [];
      assert.deepEqual(Object.keys(env(h)).sort(), [
        'ORDERS_DOCUMENTS_BUCKET', ...history, 'ORDERS_HANDLER', 'ORDERS_LEDGER_TABLE', 'RUST_LOG']);
      assert.equal(refId(env(h).ORDERS_LEDGER_TABLE), ledgerId);
      if (history.length) assert.equal(refId(env(h).ORDERS_EVENTS_TABLE), eventsTableId);
    }
  });
  it('log to groups with a retention (30 days by default), as does the API access log', () => {
    const groups = ofType(json, 'AWS::Logs::LogGroup');
    assert.equal(groups.length, fns.length + 1);
    for (const [id, g] of groups) assert.equal(g.Properties.RetentionInDays, 30, id);
  });
  it('are built from the workspace crates by cargo-lambda (asset metadata)', () => {
    const paths = (binary: 'orders-api' | 'orders-projector' | 'orders-handler' | 'orders-intake') =>
      functionsOf(json, binary).map(([, f]) => String(f.Metadata?.['aws:asset:path']));
    assert.ok(paths('orders-api').every((p) => p.endsWith('command-api')));
    assert.ok(paths('orders-projector').every((p) => p.endsWith('projector')));
    assert.ok(paths('orders-handler').every((p) => p.endsWith('handlers')));
    assert.ok(paths('orders-intake').every((p) => p.endsWith('command-api')));
  });
});

describe('projector event source', () => {
  const [, projector] = functionsOf(json, 'orders-projector')[0];
  const projectorId = functionsOf(json, 'orders-projector')[0][0];
  const mappings = ofType(json, 'AWS::Lambda::EventSourceMapping')
    .filter(([, m]) => refId(m.Properties.FunctionName) === projectorId);
  it('reads the event table stream from TRIM_HORIZON with bounded retries, batching and bisect', () => {
    assert.equal(mappings.length, 1);
    const p = mappings[0][1].Properties;
    assert.deepEqual(p.EventSourceArn, { 'Fn::GetAtt': [eventsTableId, 'StreamArn'] });
    assert.equal(p.StartingPosition, 'TRIM_HORIZON');
    assert.equal(p.BatchSize, 100);
    assert.ok(p.BatchSize >= 1 && p.BatchSize <= 10000);
    assert.equal(p.MaximumBatchingWindowInSeconds, 1);
    assert.ok(p.MaximumBatchingWindowInSeconds >= 1);
    assert.equal(p.BisectBatchOnFunctionError, true);
    assert.deepEqual(p.FunctionResponseTypes, ['ReportBatchItemFailures']);
    assert.equal(p.MaximumRetryAttempts, 10);
    assert.ok(p.MaximumRetryAttempts >= 0 && p.MaximumRetryAttempts <= 10000, 'retries bounded (not -1)');
    assert.ok(p.MaximumRecordAgeInSeconds >= 60 && p.MaximumRecordAgeInSeconds <= 604800, 'record age bounded (not -1)');
    assert.equal(p.MaximumRecordAgeInSeconds, 21600, '6 hours');
    assert.equal(p.ParallelizationFactor, 1);
  });
  it('parks what it gives up on in the queue `orders parked list --backend aws` reads', () => {
    const dest = mappings[0][1].Properties.DestinationConfig.OnFailure.Destination;
    const queue = json.Resources[refId(dest)!].Properties;
    assert.equal(queue.QueueName, 'orders-projector-failures');
    assert.equal(queue.MessageRetentionPeriod, 1209600, '14 days');
  });
  it('sends failed batches to an encrypted SQS queue', () => {
    const dest = mappings[0][1].Properties.DestinationConfig.OnFailure.Destination;
    const qid = refId(dest)!;
    assert.equal(json.Resources[qid].Type, 'AWS::SQS::Queue');
    assert.equal(json.Resources[qid].Properties.SqsManagedSseEnabled, true);
  });
  it('passes only event inserts (eventName INSERT and NewImage.eventId exists)', () => {
    const filters = mappings[0][1].Properties.FilterCriteria.Filters;
    assert.equal(filters.length, 1);
    assert.deepEqual(JSON.parse(filters[0].Pattern), {
      eventName: ['INSERT'],
      dynamodb: { NewImage: { eventId: { S: [{ exists: true }] } } },
    });
  });
  it('the projector timeout fits the stream settings', () => {
    assert.ok(projector.Properties.Timeout <= 900);
  });
});

describe('EventBridge bus, archive and one rule per route (from routes.json)', () => {
  const buses = ofType(json, 'AWS::Events::EventBus');
  it('has one custom bus named ordersource by default', () => {
    assert.equal(buses.length, 1);
    assert.equal(buses[0][1].Properties.Name, 'ordersource');
  });
  it('archives the bus with a retention set', () => {
    const archives = ofType(json, 'AWS::Events::Archive');
    assert.equal(archives.length, 1);
    const p = archives[0][1].Properties;
    assert.equal(refId(p.SourceArn), buses[0][0]);
    assert.equal(p.RetentionDays, 365);
    assert.deepEqual(p.EventPattern, { source: [ROUTES.source] });
  });
  it(`has exactly ${N} rules, one per route, each with the file's pattern and name`, () => {
    const rules = ofType(json, 'AWS::Events::Rule');
    assert.equal(rules.length, N);
    for (const route of ROUTES.routes) {
      const found = rules.filter(([, r]) => r.Properties.Name === route.rule);
      assert.equal(found.length, 1, route.rule);
      const p = found[0][1].Properties;
      assert.equal(refId(p.EventBusName), buses[0][0]);
      assert.deepEqual(p.EventPattern, route.eventPattern);
      assert.equal(p.State, 'ENABLED');
    }
  });
  it('each rule targets its route queue, with the route DLQ for failed deliveries', () => {
    for (const route of ROUTES.routes) {
      const [ruleId, rule] = ofType(json, 'AWS::Events::Rule').find(([, r]) => r.Properties.Name === route.rule)!;
      const [queueId] = queueNamed(json, route.queue);
      const [dlqId] = queueNamed(json, route.deadLetterQueue);
      const targets = rule.Properties.Targets;
      assert.equal(targets.length, 1, ruleId);
      assert.equal(refId(targets[0].Arn), queueId);
      assert.equal(refId(targets[0].DeadLetterConfig.Arn), dlqId);
      assert.ok(targets[0].RetryPolicy.MaximumRetryAttempts > 0);
    }
  });
});

describe('route queues, DLQs, queue policies and handler event sources', () => {
  const queues = ofType(json, 'AWS::SQS::Queue');
  it(`has ${2 * N} route queues, the intake queue and its DLQ, and the projector failure queue, all encrypted`, () => {
    assert.equal(queues.length, 2 * N + 2 + 1);
    for (const [id, q] of queues) assert.equal(q.Properties.SqsManagedSseEnabled, true, id);
  });
  for (const route of ROUTES.routes) {
    it(`${route.status}: queue ${route.queue} -> DLQ ${route.deadLetterQueue} after ${route.maxReceiveCount} receives`, () => {
      const [, queue] = queueNamed(json, route.queue);
      const [dlqId, dlq] = queueNamed(json, route.deadLetterQueue);
      assert.equal(queue.Properties.VisibilityTimeout, route.visibilityTimeoutSeconds);
      assert.deepEqual(queue.Properties.RedrivePolicy, {
        deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] }, maxReceiveCount: route.maxReceiveCount });
      assert.equal(dlq.Properties.MessageRetentionPeriod, 1209600);
      // The route queue keeps messages as long as its DLQ: 14 days.
      assert.equal(queue.Properties.MessageRetentionPeriod, 1209600);
    });
    it(`${route.status}: only rule ${route.rule} may send to ${route.queue}, only over TLS`, () => {
      const [queueId] = queueNamed(json, route.queue);
      const [ruleId] = ofType(json, 'AWS::Events::Rule').find(([, r]) => r.Properties.Name === route.rule)!;
      const policies = ofType(json, 'AWS::SQS::QueuePolicy')
        .filter(([, p]) => p.Properties.Queues.some((q: any) => refId(q) === queueId));
      assert.equal(policies.length, 1);
      const st = asArray(policies[0][1].Properties.PolicyDocument.Statement);
      const allows = st.filter((s: any) => s.Effect === 'Allow');
      assert.equal(allows.length, 1);
      assert.deepEqual(allows[0].Principal, { Service: 'events.amazonaws.com' });
      assert.ok(asArray(allows[0].Action).includes('sqs:SendMessage'));
      assert.deepEqual(allows[0].Condition, { ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': [ruleId, 'Arn'] } } });
      assert.ok(st.some((s: any) => s.Effect === 'Deny' && s.Condition?.Bool?.['aws:SecureTransport'] === 'false'));
    });
    it(`${route.status}: handler ${route.handler} reads ${route.queue} in batches of ${route.batchSize} with partial failures`, () => {
      const [fnId, fn] = handlerFunction(json, route.handler);
      const [queueId] = queueNamed(json, route.queue);
      const mappings = ofType(json, 'AWS::Lambda::EventSourceMapping')
        .filter(([, m]) => refId(m.Properties.FunctionName) === fnId);
      assert.equal(mappings.length, 1);
      const p = mappings[0][1].Properties;
      assert.deepEqual(p.EventSourceArn, { 'Fn::GetAtt': [queueId, 'Arn'] });
      assert.equal(p.BatchSize, route.batchSize);
      assert.deepEqual(p.FunctionResponseTypes, ['ReportBatchItemFailures']);
      assert.ok(fn.Properties.Timeout <= route.visibilityTimeoutSeconds,
        'visibility timeout must be >= the handler timeout');
      // A sixth of the visibility timeout (30 s in routes.json for every route today: 5 s).
      assert.equal(fn.Properties.Timeout, Math.max(1, Math.floor(route.visibilityTimeoutSeconds / 6)));
      if (route.visibilityTimeoutSeconds === 30) assert.equal(fn.Properties.Timeout, 5);
    });
  }
});

describe('HTTP API', () => {
  const apis = ofType(json, 'AWS::ApiGatewayV2::Api');
  it('is one HTTP API whose integration is orders-api with payload v2', () => {
    assert.equal(apis.length, 1);
    assert.equal(apis[0][1].Properties.ProtocolType, 'HTTP');
    const integrations = ofType(json, 'AWS::ApiGatewayV2::Integration');
    assert.equal(integrations.length, 1);
    const p = integrations[0][1].Properties;
    assert.equal(p.IntegrationType, 'AWS_PROXY');
    assert.equal(p.PayloadFormatVersion, '2.0');
    assert.equal(refId(p.IntegrationUri), functionsOf(json, 'orders-api')[0][0]);
  });
  it('routes everything to orders-api ($default) plus public GET /health and /openapi.json', () => {
    const keys = ofType(json, 'AWS::ApiGatewayV2::Route').map(([, r]) => r.Properties.RouteKey).sort();
    assert.deepEqual(keys, ['$default', 'GET /health', 'GET /openapi.json']);
  });
  it('throttles the stage at 100 rps, burst 200 (seed 003) and writes access logs', () => {
    const stages = ofType(json, 'AWS::ApiGatewayV2::Stage');
    assert.equal(stages.length, 1);
    const p = stages[0][1].Properties;
    assert.equal(p.StageName, '$default');
    assert.equal(p.AutoDeploy, true);
    assert.equal(p.DefaultRouteSettings.ThrottlingRateLimit, 100);
    assert.equal(p.DefaultRouteSettings.ThrottlingBurstLimit, 200);
    const lg = refId(p.AccessLogSettings.DestinationArn)!;
    assert.equal(json.Resources[lg].Type, 'AWS::Logs::LogGroup');
    assert.match(p.AccessLogSettings.Format, /\$context\.requestId/);
  });
  it('has no JWT authorizer and no CORS by default', () => {
    assert.equal(ofType(json, 'AWS::ApiGatewayV2::Authorizer').length, 0);
    for (const [, r] of ofType(json, 'AWS::ApiGatewayV2::Route')) {
      assert.ok(r.Properties.AuthorizationType === undefined || r.Properties.AuthorizationType === 'NONE');
    }
    assert.equal(apis[0][1].Properties.CorsConfiguration, undefined);
  });
});

describe('alarms and dashboard', () => {
  const alarms = ofType(json, 'AWS::CloudWatch::Alarm');
  const [topicId, topic] = ofType(json, 'AWS::SNS::Topic')[0];
  const fns = ofType(json, 'AWS::Lambda::Function');
  it('go to one KMS-encrypted SNS topic that CloudWatch may use', () => {
    assert.equal(ofType(json, 'AWS::SNS::Topic').length, 1);
    const keyId = refId(topic.Properties.KmsMasterKeyId)!;
    const key = json.Resources[keyId];
    assert.equal(key.Type, 'AWS::KMS::Key');
    assert.equal(key.Properties.EnableKeyRotation, true);
    const st = asArray(key.Properties.KeyPolicy.Statement);
    assert.ok(st.some((s: any) => s.Principal?.Service === 'cloudwatch.amazonaws.com'
      && asArray(s.Action).includes('kms:GenerateDataKey') && asArray(s.Action).includes('kms:Decrypt')));
    for (const [id, a] of alarms) {
      assert.deepEqual(a.Properties.AlarmActions, [{ Ref: topicId }], id);
    }
  });
  it('alarm on depth > 0 of every DLQ (the intake\'s too) and of the projector failure queue', () => {
    const depthAlarms = alarms.filter(([, a]) => a.Properties.MetricName === 'ApproximateNumberOfMessagesVisible');
    const alarmedQueues = new Set(depthAlarms.map(([, a]) => refsIn(a.Properties.Dimensions)).flatMap((s) => [...s]));
    const expected = [...ROUTES.routes.map((r) => queueNamed(json, r.deadLetterQueue)[0]),
      queueNamed(json, ROUTES.intake.deadLetterQueue)[0]];
    const failureQueue = refId(ofType(json, 'AWS::Lambda::EventSourceMapping')
      .find(([, m]) => m.Properties.DestinationConfig)![1].Properties.DestinationConfig.OnFailure.Destination)!;
    expected.push(failureQueue);
    assert.deepEqual(alarmedQueues, new Set(expected));
    assert.equal(depthAlarms.length, N + 2);
    for (const [id, a] of depthAlarms) {
      assert.equal(a.Properties.Threshold, 0, id);
      assert.equal(a.Properties.ComparisonOperator, 'GreaterThanThreshold', id);
      assert.equal(a.Properties.Namespace, 'AWS/SQS', id);
    }
  });
  it('alarm on the projector iterator age', () => {
    const age = alarms.filter(([, a]) => a.Properties.MetricName === 'IteratorAge');
    assert.equal(age.length, 1);
    assert.equal(refId(age[0][1].Properties.Dimensions[0].Value), functionsOf(json, 'orders-projector')[0][0]);
    assert.equal(age[0][1].Properties.Statistic, 'Maximum');
  });
  it('alarm on Errors and Throttles of every function', () => {
    for (const metric of ['Errors', 'Throttles']) {
      const these = alarms.filter(([, a]) => a.Properties.MetricName === metric && a.Properties.Namespace === 'AWS/Lambda');
      const covered = new Set(these.map(([, a]) => refId(a.Properties.Dimensions[0].Value)));
      assert.deepEqual(covered, new Set(fns.map(([id]) => id)), metric);
      assert.equal(these.length, fns.length, metric);
    }
  });
  it('alarm on API 5xx', () => {
    const x = alarms.filter(([, a]) => a.Properties.MetricName === '5xx' && a.Properties.Namespace === 'AWS/ApiGateway');
    assert.equal(x.length, 1);
    assert.equal(refId(x[0][1].Properties.Dimensions[0].Value), apisId());
  });
  it('has no other alarms', () => {
    // A DLQ depth alarm per route, the intake's and the projector's failure queue's.
    assert.equal(alarms.length, (N + 2) + 1 + 2 * fns.length + 1);
  });
  it('has a pipeline dashboard', () => {
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    template.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardBody: Match.anyValue() });
  });
});

function apisId(): string {
  return ofType(json, 'AWS::ApiGatewayV2::Api')[0][0];
}

describe('least-privilege IAM', () => {
  const fns = ofType(json, 'AWS::Lambda::Function');
  it('no role has a managed policy; every role but the operator one is assumable by Lambda only', () => {
    for (const [id, r] of ofType(json, 'AWS::IAM::Role')) {
      assert.equal(r.Properties.ManagedPolicyArns, undefined, id);
      const st = asArray(r.Properties.AssumeRolePolicyDocument.Statement);
      if (id.startsWith('OperatorRole')) {
        // The operator role (orders republish) is assumed by people/automation of this account.
        assert.deepEqual(st.map((s: any) => s.Principal.AWS['Fn::Join'][1].at(-1)), [':root'], id);
        continue;
      }
      assert.deepEqual(st.map((s: any) => s.Principal), [{ Service: 'lambda.amazonaws.com' }], id);
    }
    assert.equal(ofType(json, 'AWS::IAM::Role').length, fns.length + 1);
  });
  it('no identity policy statement has a "*" in an action; "*" resource only for dynamodb:ListStreams and X-Ray', () => {
    let count = 0;
    for (const [roleId] of ofType(json, 'AWS::IAM::Role')) {
      for (const s of roleStatements(json, roleId)) {
        count++;
        assert.equal(s.Effect, 'Allow');
        for (const a of asArray(s.Action)) assert.ok(!String(a).includes('*'), `${roleId}: action ${a}`);
        assert.equal(s.NotAction, undefined);
        assert.equal(s.NotResource, undefined);
        for (const r of asArray(s.Resource)) {
          if (r === '*') {
            const unscoped = new Set(['dynamodb:ListStreams', 'xray:PutTelemetryRecords', 'xray:PutTraceSegments']);
            assert.ok(asArray(s.Action).every((a) => unscoped.has(String(a))), `${roleId}: "*" resource for ${JSON.stringify(s.Action)}`);
          }
          else if (typeof r === 'string') assert.ok(!r.includes('*'), `${roleId}: literal resource ${r}`);
        }
      }
    }
    assert.ok(count > 0);
  });
  it('no resource or key policy allows a "*" action (TLS-only denies may say service:*)', () => {
    const docs: [string, any][] = [];
    for (const [id, r] of Object.entries(json.Resources)) {
      const p = r.Properties ?? {};
      if (p.PolicyDocument && r.Type !== 'AWS::IAM::Policy') docs.push([id, p.PolicyDocument]);
      if (p.KeyPolicy) docs.push([id, p.KeyPolicy]);
    }
    assert.ok(docs.length > 0);
    for (const [id, doc] of docs) {
      for (const s of asArray(doc.Statement) as any[]) {
        if (s.Effect === 'Deny') {
          assert.deepEqual(s.Condition, { Bool: { 'aws:SecureTransport': 'false' } }, `${id}: only TLS denies`);
          continue;
        }
        for (const a of asArray(s.Action)) assert.ok(!String(a).includes('*'), `${id}: allows ${a}`);
      }
    }
  });

  /** action -> the logical ids its resources point at, for one function's role. */
  const grants = (fnId: string) => {
    const roleId = refId(json.Resources[fnId].Properties.Role)!;
    const m = new Map<string, Set<string>>();
    for (const s of roleStatements(json, roleId)) {
      for (const a of asArray(s.Action) as string[]) {
        const set = m.get(a) ?? new Set<string>();
        for (const r of asArray(s.Resource)) {
          if (r === '*') set.add('*');
          else for (const id of refsIn(r)) set.add(id);
        }
        m.set(a, set);
      }
    }
    return m;
  };
  const bucketId = ofType(json, 'AWS::S3::Bucket').find(([, b]) => b.Properties.VersioningConfiguration)![0];
  const busId = ofType(json, 'AWS::Events::EventBus')[0][0];
  const logsOf = (fnId: string) => refId(json.Resources[fnId].Properties.LoggingConfig.LogGroup)!;
  // Active tracing (observability.test.ts): X-Ray's actions have no resource-level permissions.
  const XRAY: [string, Set<string>][] = [
    ['xray:PutTelemetryRecords', new Set(['*'])],
    ['xray:PutTraceSegments', new Set(['*'])],
  ];
  const asObj = (m: Map<string, Set<string>>) =>
    Object.fromEntries([...m.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([a, s]) => [a, [...s].sort()]));

  it('orders-api: events Query/PutItem, read model reads, ledger, documents read', () => {
    const [fnId] = functionsOf(json, 'orders-api')[0];
    assert.deepEqual(asObj(grants(fnId)), asObj(new Map([
      ['dynamodb:DeleteItem', new Set([ledgerId])],
      ['dynamodb:GetItem', new Set([readModelId, ledgerId])],
      ['dynamodb:PutItem', new Set([eventsTableId, ledgerId])],
      ['dynamodb:Query', new Set([eventsTableId, readModelId])],
      ['logs:CreateLogStream', new Set([logsOf(fnId)])],
      ['logs:PutLogEvents', new Set([logsOf(fnId)])],
      ['s3:GetObject', new Set([bucketId])],
      ['s3:ListBucket', new Set([bucketId])],
      ...XRAY,
    ])));
    // The GSI is reachable by Query only, and only that index.
    const roleId = refId(json.Resources[fnId].Properties.Role)!;
    const indexStatements = roleStatements(json, roleId)
      .filter((s) => JSON.stringify(s.Resource).includes('/index/'));
    assert.equal(indexStatements.length, 1);
    assert.deepEqual(asArray(indexStatements[0].Action), ['dynamodb:Query']);
    assert.match(JSON.stringify(indexStatements[0].Resource), /\/index\/status-index"/);
    // ListBucket only under the documents' prefix.
    const list = roleStatements(json, roleId).filter((s) => asArray(s.Action).includes('s3:ListBucket'));
    assert.equal(list.length, 1);
    assert.deepEqual(list[0].Condition, { StringLike: { 's3:prefix': ['orders/*'] } });
  });
  it('object grants reach the orders/ prefix only (the API reads and signs, handlers write), the intake\'s intake/ only', () => {
    const objectStatements = Object.values<any>(json.Resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy')
      .flatMap((r) => r.Properties.PolicyDocument.Statement)
      .filter((s: any) => asArray(s.Action).some((a: string) => a === 's3:GetObject' || a === 's3:PutObject'));
    assert.ok(objectStatements.length >= 6, `${objectStatements.length}`);
    for (const s of objectStatements) {
      const prefix = s.Sid === 'IntakeArchive' ? '/intake/*' : '/orders/*';
      assert.deepEqual(s.Resource, { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId, 'Arn'] }, prefix]] });
    }
  });
  it('orders-projector: stream read, read-model writes, PutEvents on the bus, SendMessage to its failure queue', () => {
    const [fnId] = functionsOf(json, 'orders-projector')[0];
    const failureQueue = refId(ofType(json, 'AWS::Lambda::EventSourceMapping')
      .find(([, m]) => m.Properties.DestinationConfig)![1].Properties.DestinationConfig.OnFailure.Destination)!;
    assert.deepEqual(asObj(grants(fnId)), asObj(new Map([
      ['dynamodb:DescribeStream', new Set([eventsTableId])],
      ['dynamodb:GetRecords', new Set([eventsTableId])],
      ['dynamodb:GetShardIterator', new Set([eventsTableId])],
      ['dynamodb:ListStreams', new Set(['*'])],
      ['dynamodb:GetItem', new Set([readModelId, ledgerId])],
      ['dynamodb:PutItem', new Set([readModelId])],
      ['events:PutEvents', new Set([busId])],
      ['logs:CreateLogStream', new Set([logsOf(fnId)])],
      ['logs:PutLogEvents', new Set([logsOf(fnId)])],
      ['sqs:GetQueueAttributes', new Set([failureQueue])],
      ['sqs:GetQueueUrl', new Set([failureQueue])],
      ['sqs:SendMessage', new Set([failureQueue])],
      ...XRAY,
    ])));
  });
  it('the read model functions reach the tables a rebuild creates, and the projector reads only the pointer item of the ledger', () => {
    const rebuilt = (r: any) => JSON.stringify(r).includes(`"${REBUILT_TABLES_SUFFIX}`);
    const statementsOf = (binary: 'orders-api' | 'orders-projector') => {
      const [fnId] = functionsOf(json, binary)[0];
      return roleStatements(json, refId(json.Resources[fnId].Properties.Role)!);
    };
    const api = statementsOf('orders-api');
    const apiRebuilt = api.filter((s) => asArray(s.Resource).some(rebuilt));
    assert.deepEqual(apiRebuilt.map((s) => s.Sid).sort(), ['ReadModel', 'ReadModelStatusIndex']);
    for (const s of apiRebuilt) {
      // Both the table the stack made and the rebuilt ones, each by its table ARN.
      assert.equal(asArray(s.Resource).length, 2, s.Sid);
      assert.ok(asArray(s.Resource).every((r) => refsIn(r).has(readModelId)), s.Sid);
    }
    const projector = statementsOf('orders-projector');
    const write = projector.find((s) => s.Sid === 'ReadModelWrite');
    assert.ok(write && asArray(write.Resource).some(rebuilt), 'the projector writes rebuilt tables');
    const pointer = projector.find((s) => s.Sid === 'LiveTablePointer');
    assert.deepEqual(asArray(pointer.Action), ['dynamodb:GetItem']);
    assert.equal(refId(asArray(pointer.Resource)[0]), ledgerId);
    assert.deepEqual(pointer.Condition, {
      'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [LIVE_TABLE_POINTER_PK] },
    });
    // Nothing else of the ledger.
    assert.deepEqual(projector.filter((s) => refsIn(s.Resource).has(ledgerId)).map((s) => s.Sid), ['LiveTablePointer']);
    // The names the Rust code uses (backend/src/aws/live_table.rs POINTER_PK, rebuild.rs
    // FRESH_INFIX): a drift here would deny the functions what they need.
    assert.equal(LIVE_TABLE_POINTER_PK, 'read-model#live');
    assert.equal(REBUILT_TABLES_SUFFIX, '-rebuild-*');
  });
  for (const route of ROUTES.routes) {
    it(`orders-handler ${route.handler}: ledger, documents put only, consume its own queue only (the invoice: and Query the events)`, () => {
      const [fnId] = handlerFunction(json, route.handler);
      const [queueId] = queueNamed(json, route.queue);
      const history: [string, Set<string>][] = route.handler === 'completed'
        ? [['dynamodb:Query', new Set([eventsTableId])]]
        : [];
      assert.deepEqual(asObj(grants(fnId)), asObj(new Map([
        ['dynamodb:DeleteItem', new Set([ledgerId])],
        ['dynamodb:GetItem', new Set([ledgerId])],
        ['dynamodb:PutItem', new Set([ledgerId])],
        ...history,
        ['logs:CreateLogStream', new Set([logsOf(fnId)])],
        ['logs:PutLogEvents', new Set([logsOf(fnId)])],
        ['s3:PutObject', new Set([bucketId])],
        ['sqs:ChangeMessageVisibility', new Set([queueId])],
        ['sqs:DeleteMessage', new Set([queueId])],
        ['sqs:GetQueueAttributes', new Set([queueId])],
        ['sqs:GetQueueUrl', new Set([queueId])],
        ['sqs:ReceiveMessage', new Set([queueId])],
        ...XRAY,
      ])));
    });
  }
});

describe('who may publish on the bus', () => {
  const policies = ofType(json, 'AWS::Events::EventBusPolicy').map(([, p]) => p.Properties);
  const [projectorId] = functionsOf(json, 'orders-projector')[0];
  const projectorRole = refId(json.Resources[projectorId].Properties.Role)!;
  const operatorRole = ofType(json, 'AWS::IAM::Role').find(([id]) => id.startsWith('OperatorRole'))![0];
  const publishers = [{ 'Fn::GetAtt': [projectorRole, 'Arn'] }, { 'Fn::GetAtt': [operatorRole, 'Arn'] }];
  it('the bus policy denies PutEvents to every principal but the projector and the operator role', () => {
    assert.ok(policies.every((p) => refId(p.EventBusName) === busIdOf()));
    const deny = policies.map((p) => p.Statement).find((st) => st.Effect === 'Deny');
    assert.ok(deny, 'a Deny statement');
    assert.equal(deny.Action, 'events:PutEvents');
    assert.deepEqual(deny.Principal, { AWS: '*' });
    assert.deepEqual(deny.Condition, {
      ArnNotEquals: { 'aws:PrincipalArn': publishers },
      Null: { 'aws:PrincipalArn': 'false' },
    });
  });
  it('allows PutEvents to exactly those two, and to no one else', () => {
    const allows = policies.map((p) => p.Statement).filter((st) => st.Effect === 'Allow');
    assert.equal(allows.length, 1);
    assert.equal(allows[0].Action, 'events:PutEvents');
    assert.deepEqual(allows[0].Principal, { AWS: publishers });
    assert.equal(allows[0].Condition, undefined);
  });
  it('no handler or API role holds events:PutEvents', () => {
    for (const [fnId, fn] of ofType(json, 'AWS::Lambda::Function')) {
      const roleId = refId(fn.Properties.Role)!;
      if (roleId === projectorRole) continue;
      const actions = roleStatements(json, roleId).flatMap((s) => asArray(s.Action));
      assert.ok(!actions.includes('events:PutEvents'), fnId);
    }
  });
  it('with operatorRoleArn set, that role is named instead of a created one', () => {
    const arn = 'arn:aws:iam::123456789012:role/ops/orders-operator';
    const { json: other } = synth({ operatorRoleArn: arn });
    assert.equal(ofType(other, 'AWS::IAM::Role').filter(([id]) => id.startsWith('OperatorRole')).length, 0);
    const st = ofType(other, 'AWS::Events::EventBusPolicy').map(([, p]) => p.Properties.Statement);
    const deny = st.find((x) => x.Effect === 'Deny');
    assert.deepEqual(deny.Condition.ArnNotEquals['aws:PrincipalArn'][1], arn);
    assert.deepEqual(st.find((x) => x.Effect === 'Allow').Principal.AWS[1], arn);
    assert.throws(() => synth({ operatorRoleArn: 'orders-operator' }), /operatorRoleArn/);
  });
});

describe('outputs', () => {
  it('name the API URL, bus, tables, bucket and alarm topic', () => {
    assert.deepEqual(Object.keys(json.Outputs ?? {}).sort(), [
      'AlarmTopicArn', 'ApiUrl', 'DocumentsBucketName', 'EventBusName', 'EventsTableName',
      'LedgerTableName', 'OperatorRoleArn', 'ReadModelTableName']);
  });
});
