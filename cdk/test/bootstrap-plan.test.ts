/**
 * `orders aws bootstrap` (backend/src/aws/bootstrap.rs) and this stack create the same
 * tables and queues. The bootstrap carries out a plan, checked in as
 * backend/aws-bootstrap-plan.json (a Rust test fails when the plan and the file differ);
 * here every table and route queue of the plan is compared with the synthesized template,
 * and every table and named queue of the template must be in the plan.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from '../lib/routes';
import { ofType, refId, synth } from './helpers';

const PLAN_FILE = path.join(REPO_ROOT, 'backend', 'aws-bootstrap-plan.json');

interface Key { attributeName: string; keyType: string }
interface Plan {
  tables: {
    role: string;
    keySchema: Key[];
    attributeDefinitions: { attributeName: string; attributeType: string }[];
    globalSecondaryIndexes: { indexName: string; keySchema: Key[]; projectionType: string }[];
    streamViewType: string | null;
    timeToLiveAttribute: string | null;
  }[];
  queues: {
    queueName: string;
    visibilityTimeout: number | null;
    messageRetentionPeriod: number;
    redrivePolicy: { deadLetterQueue: string; maxReceiveCount: number } | null;
  }[];
}

const plan = JSON.parse(fs.readFileSync(PLAN_FILE, 'utf-8')) as Plan;
const { json } = synth();
const keys = (ks: any[]) => ks.map((k) => ({ attributeName: k.AttributeName, keyType: k.KeyType }));
const sorted = <T>(xs: T[]) => [...xs].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

/** The template's table whose construct id is `role` (logical ids add a hash). */
function tableOf(role: string): any {
  const found = ofType(json, 'AWS::DynamoDB::Table').filter(([id]) => id.replace(/[0-9A-F]{8}$/, '') === role);
  assert.equal(found.length, 1, `one ${role} in the template`);
  return found[0][1].Properties;
}

/** The template's queue with this physical name, with its logical id. */
function queueNamed(name: string): [string, any] {
  const found = ofType(json, 'AWS::SQS::Queue').filter(([, q]) => q.Properties.QueueName === name);
  assert.equal(found.length, 1, `one queue named ${name} in the template`);
  return [found[0][0], found[0][1].Properties];
}

describe('the bootstrap plan and the template agree', () => {
  it('on the set of tables', () => {
    const roles = ofType(json, 'AWS::DynamoDB::Table').map(([id]) => id.replace(/[0-9A-F]{8}$/, '')).sort();
    assert.deepEqual(roles, plan.tables.map((t) => t.role).sort());
  });

  for (const t of plan.tables) {
    describe(t.role, () => {
      const cfn = tableOf(t.role);
      it('keys and attribute definitions', () => {
        assert.deepEqual(keys(cfn.KeySchema), t.keySchema);
        assert.deepEqual(
          sorted(cfn.AttributeDefinitions.map((a: any) => ({ attributeName: a.AttributeName, attributeType: a.AttributeType }))),
          sorted(t.attributeDefinitions));
        assert.equal(cfn.BillingMode, 'PAY_PER_REQUEST');
      });
      it('indexes', () => {
        assert.deepEqual(
          (cfn.GlobalSecondaryIndexes ?? []).map((i: any) => ({
            indexName: i.IndexName, keySchema: keys(i.KeySchema), projectionType: i.Projection.ProjectionType,
          })),
          t.globalSecondaryIndexes);
      });
      it('stream view type', () => {
        assert.equal(cfn.StreamSpecification?.StreamViewType ?? null, t.streamViewType);
      });
      it('TTL attribute', () => {
        const ttl = cfn.TimeToLiveSpecification;
        assert.equal(ttl?.Enabled ? ttl.AttributeName : null, t.timeToLiveAttribute);
      });
    });
  }

  it('on the set of named queues (every route queue and dead-letter queue)', () => {
    const named = ofType(json, 'AWS::SQS::Queue').map(([, q]) => q.Properties.QueueName).filter(Boolean).sort();
    assert.deepEqual(named, plan.queues.map((q) => q.queueName).sort());
  });

  for (const q of plan.queues) {
    it(`queue ${q.queueName}: visibility timeout, retention, redrive, encryption`, () => {
      const [, cfn] = queueNamed(q.queueName);
      assert.equal(cfn.VisibilityTimeout ?? null, q.visibilityTimeout);
      assert.equal(cfn.MessageRetentionPeriod, q.messageRetentionPeriod);
      assert.equal(cfn.SqsManagedSseEnabled, true);
      if (q.redrivePolicy === null) {
        assert.equal(cfn.RedrivePolicy, undefined);
      } else {
        const [dlqId] = queueNamed(q.redrivePolicy.deadLetterQueue);
        assert.equal(refId(cfn.RedrivePolicy.deadLetterTargetArn), dlqId);
        assert.equal(cfn.RedrivePolicy.maxReceiveCount, q.redrivePolicy.maxReceiveCount);
      }
    });
  }
});
