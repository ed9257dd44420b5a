/**
 * The intake (routes.json's `intake`): its queue and dead-letter queue as the file declares
 * them, orders-intake fed by the queue with partial batch responses, an alarm on the DLQ's
 * depth, and a role holding only what the intake does: consume its queue, send to its DLQ,
 * run commands on the event table as the API does, its own ledger keys (`intake/*`), and
 * PutObject of archived messages under `intake/` (nothing of the orders' documents).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { loadRouteTable, ROUTES_FILE } from '../lib/routes';
import {
  asArray, ofType, queueNamed, refId, refsIn, roleStatements, ROUTES, synth, tempDir,
} from './helpers';

const { json } = synth();
const intake = ROUTES.intake;

function intakeFunction(): [string, any] {
  const found = ofType(json, 'AWS::Lambda::Function').filter(([id]) => id.startsWith('OrdersIntake'));
  assert.equal(found.length, 1, 'one orders-intake function');
  return found[0];
}

/** The intake role's statements by Sid. */
function statements(): Record<string, any> {
  const [, fn] = intakeFunction();
  const st = roleStatements(json, refId(fn.Properties.Role)!);
  return Object.fromEntries(st.map((s) => [s.Sid ?? JSON.stringify(s.Action), s]));
}

describe('intake declaration in routes.json', () => {
  it('is read from the file the Rust side reads, and a broken one is refused naming the field', () => {
    const good = JSON.parse(fs.readFileSync(ROUTES_FILE, 'utf-8'));
    assert.deepEqual(ROUTES.intake, good.intake);
    const dir = tempDir('intake-');
    const write = (doc: unknown) => {
      const f = path.join(dir, `r${Math.random()}.json`);
      fs.writeFileSync(f, JSON.stringify(doc));
      return f;
    };
    assert.throws(() => loadRouteTable(write({ ...good, intake: undefined })), /intake must be an object/);
    assert.throws(() => loadRouteTable(write({ ...good, intake: { ...good.intake, batchSize: 0 } })), /intake\.batchSize/);
    assert.throws(() => loadRouteTable(write({ ...good, intake: { ...good.intake, queue: good.routes[0].queue } })), /used twice/);
  });
});

describe('intake queue, function and event source', () => {
  const [queueId, queue] = queueNamed(json, intake.queue);
  const [dlqId, dlq] = queueNamed(json, intake.deadLetterQueue);

  it('the queue and its DLQ are the ones routes.json declares, encrypted, with its redrive policy', () => {
    assert.equal(queue.Properties.VisibilityTimeout, intake.visibilityTimeoutSeconds);
    assert.equal(refId(queue.Properties.RedrivePolicy.deadLetterTargetArn), dlqId);
    assert.equal(queue.Properties.RedrivePolicy.maxReceiveCount, intake.maxReceiveCount);
    for (const q of [queue, dlq]) {
      assert.equal(q.Properties.SqsManagedSseEnabled, true);
      assert.equal(q.Properties.MessageRetentionPeriod, 14 * 24 * 3600);
    }
  });

  it('orders-intake is the command-api crate\'s orders-intake binary, timed within the visibility timeout', () => {
    const [, fn] = intakeFunction();
    assert.equal(fn.Properties.Timeout, Math.floor(intake.visibilityTimeoutSeconds / 6));
    const env = fn.Properties.Environment.Variables;
    for (const name of ['ORDERS_EVENTS_TABLE', 'ORDERS_LEDGER_TABLE', 'ORDERS_DOCUMENTS_BUCKET', 'ORDERS_QUEUE_PREFIX']) {
      assert.ok(name in env, name);
    }
    assert.ok(String(fn.Metadata?.['aws:asset:path'] ?? 'command-api').includes('command-api'));
  });

  it('reads the intake queue with ReportBatchItemFailures and the declared batch size', () => {
    const [fnId] = intakeFunction();
    const mappings = ofType(json, 'AWS::Lambda::EventSourceMapping')
      .filter(([, m]) => refId(m.Properties.FunctionName) === fnId);
    assert.equal(mappings.length, 1);
    const p = mappings[0][1].Properties;
    assert.deepEqual(p.EventSourceArn, { 'Fn::GetAtt': [queueId, 'Arn'] });
    assert.deepEqual(p.FunctionResponseTypes, ['ReportBatchItemFailures']);
    assert.equal(p.BatchSize, intake.batchSize);
  });

  it('an alarm fires on any message in the intake DLQ', () => {
    const alarms = ofType(json, 'AWS::CloudWatch::Alarm').filter(([, a]) =>
      a.Properties.MetricName === 'ApproximateNumberOfMessagesVisible'
      && asArray(a.Properties.Dimensions).some((d: any) => refsIn(d.Value).has(dlqId)));
    assert.equal(alarms.length, 1);
    assert.equal(alarms[0][1].Properties.Threshold, 0);
    assert.equal(alarms[0][1].Properties.ComparisonOperator, 'GreaterThanThreshold');
    assert.ok(alarms[0][1].Properties.AlarmActions.length >= 1);
  });
});

describe('intake least privilege', () => {
  const st = statements();
  const [queueId] = queueNamed(json, intake.queue);
  const [dlqId] = queueNamed(json, intake.deadLetterQueue);
  const resources = (s: any) => asArray(s.Resource);

  it('consumes only its own queue', () => {
    const consume = Object.values(st).filter((s) => asArray(s.Action).includes('sqs:ReceiveMessage'));
    assert.equal(consume.length, 1);
    assert.deepEqual(resources(consume[0]).map(refId), [queueId]);
    assert.ok(asArray(consume[0].Action).includes('sqs:DeleteMessage'));
  });

  it('sends only to its own DLQ', () => {
    const sends = Object.values(st).filter((s) => asArray(s.Action).includes('sqs:SendMessage'));
    assert.equal(sends.length, 1);
    assert.deepEqual(resources(sends[0]).map(refId), [dlqId]);
  });

  it('touches only its own ledger keys (intake/*)', () => {
    assert.deepEqual(st.IntakeLedger.Condition, {
      'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['intake/*'] },
    });
    assert.deepEqual(asArray(st.IntakeLedger.Action).sort(),
      ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem']);
  });

  it('writes the event table as the API does and reads nothing else of it', () => {
    assert.deepEqual(asArray(st.EventStore.Action).sort(), ['dynamodb:PutItem', 'dynamodb:Query']);
  });

  it('may only PutObject under intake/ in the documents bucket', () => {
    const s3 = Object.values(st).filter((s) => asArray(s.Action).some((a: string) => a.startsWith('s3:')));
    assert.equal(s3.length, 1);
    assert.deepEqual(asArray(s3[0].Action), ['s3:PutObject']);
    const [resource] = resources(s3[0]);
    const joined = JSON.stringify(resource);
    assert.ok(joined.endsWith('"/intake/*"]]}'), joined);
  });
});
