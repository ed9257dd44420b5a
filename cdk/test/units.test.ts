/**
 * The pieces under the stack: route table loading, settings validation, and the draft 4
 * event schema made from the checked-in detail schema (checked with real validators).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import Ajv2020 from 'ajv/dist/2020';
import AjvDraft04 from 'ajv-draft-04';
import addFormats from 'ajv-formats';
import { DEFAULT_SETTINGS, resolveSettings } from '../lib/config';
import { collectRefs, DETAIL_SCHEMA_FILE, eventSchemaDraft4, readDetailSchema, resolvePointer } from '../lib/event-schema';
import { loadRouteTable, patternFor, ROUTES_FILE } from '../lib/routes';
import { ofType, ROUTES, synth, tempDir } from './helpers';

const CDK_DIR = path.resolve(__dirname, '..');

describe('route table', () => {
  it('is read from events-schema/routes.json', () => {
    assert.equal(ROUTES_FILE, path.resolve(CDK_DIR, '..', 'events-schema', 'routes.json'));
    const raw = JSON.parse(fs.readFileSync(ROUTES_FILE, 'utf-8'));
    assert.deepEqual(ROUTES.routes, raw.routes);
    assert.equal(ROUTES.source, raw.source);
  });
  it('has no second copy anywhere in cdk/ (no queue, rule or DLQ name in the sources)', () => {
    const names = ROUTES.routes.flatMap((r) => [r.queue, r.deadLetterQueue, r.rule]);
    const files = ['bin', 'lib'].flatMap((d) => fs.readdirSync(path.join(CDK_DIR, d)).map((f) => path.join(CDK_DIR, d, f)));
    files.push(path.join(CDK_DIR, 'cdk.json'));
    for (const f of files) {
      const text = fs.readFileSync(f, 'utf-8');
      for (const n of names) assert.ok(!text.includes(`'${n}'`) && !text.includes(`"${n}"`), `${f} names ${n}`);
    }
  });
  it('rejects a broken table with the file and field named', () => {
    const dir = tempDir('routes-');
    const write = (doc: unknown) => {
      const f = path.join(dir, `r${Math.random()}.json`);
      fs.writeFileSync(f, JSON.stringify(doc));
      return f;
    };
    const good = JSON.parse(fs.readFileSync(ROUTES_FILE, 'utf-8'));
    const route0 = good.routes[0];
    assert.throws(() => loadRouteTable(write({ ...good, routes: [] })), /routes must be a non-empty array/);
    assert.throws(() => loadRouteTable(write({ ...good, routes: [{ ...route0, maxReceiveCount: 0 }] })), /routes\[0\]\.maxReceiveCount/);
    assert.throws(() => loadRouteTable(write({ ...good, routes: [{ ...route0, batchSize: 11 }] })), /routes\[0\]\.batchSize/);
    assert.throws(() => loadRouteTable(write({ ...good, routes: [route0, route0] })), /used twice/);
    assert.throws(() => loadRouteTable(write({ ...good, routes: [{ ...route0, eventPattern: [] }] })), /eventPattern/);
    assert.throws(() => loadRouteTable(path.join(dir, 'missing.json')), /cannot read the route table/);
  });
  it('a stack built from another table follows it (one rule per route of that file)', () => {
    const dir = tempDir('routes-');
    const good = JSON.parse(fs.readFileSync(ROUTES_FILE, 'utf-8'));
    const extra = { ...good.routes[0], status: 'archived', rule: 'order-archived', queue: 'order-archived',
      deadLetterQueue: 'order-archived-dlq', handler: 'archived', maxReceiveCount: 3, batchSize: 4,
      eventPattern: { source: [good.source], detail: { order: { status: ['archived'] } } } };
    const file = path.join(dir, 'routes.json');
    fs.writeFileSync(file, JSON.stringify({ ...good, routes: [...good.routes, extra] }));
    const { json } = synth({}, { stackProps: { routesFile: file } });
    assert.equal(ofType(json, 'AWS::Events::Rule').length, good.routes.length + 1);
    const q = ofType(json, 'AWS::SQS::Queue').find(([, r]) => r.Properties.QueueName === 'order-archived')!;
    assert.equal(q[1].Properties.RedrivePolicy.maxReceiveCount, 3);
  });
  it('patternFor substitutes only the source, and only when it differs', () => {
    const r = ROUTES.routes[0];
    assert.deepEqual(patternFor(r, ROUTES.source, ROUTES.source), r.eventPattern);
    const p = patternFor(r, ROUTES.source, 'x.y');
    assert.deepEqual(p.source, ['x.y']);
    assert.deepEqual(p.detail, r.eventPattern.detail);
    assert.deepEqual(r.eventPattern.source, [ROUTES.source], 'the loaded table is not mutated');
  });
});

describe('settings', () => {
  it('defaults: bus ordersource, 100 rps / burst 200, no CORS; no JWT only when anonymous access is asked for', () => {
    assert.throws(() => resolveSettings(), /no jwtIssuer: the API is authenticated by default.*allowAnonymous=true/s);
    const s = resolveSettings({ allowAnonymous: true });
    assert.equal(DEFAULT_SETTINGS.allowAnonymous, false);
    assert.equal(s.allowAnonymous, true);
    assert.equal(s.jwtReadScope, 'orders/read');
    assert.equal(s.jwtWriteScope, 'orders/write');
    assert.equal(s.busName, 'ordersource');
    assert.equal(s.throttleRateLimit, 100);
    assert.equal(s.throttleBurstLimit, 200);
    assert.deepEqual(s.corsOrigins, []);
    assert.equal(s.jwtIssuer, undefined);
    assert.equal(s.eventSource, undefined);
    assert.deepEqual(s, {
      busName: 'ordersource',
      throttleRateLimit: 100,
      throttleBurstLimit: 200,
      corsOrigins: [],
      jwtAudience: [],
      allowAnonymous: true,
      jwtReadScope: 'orders/read',
      jwtWriteScope: 'orders/write',
      archiveRetentionDays: 365,
      logRetentionDays: 30,
      queueNamePrefix: '',
      rustLog: 'info',
      documentLinkExpirySeconds: 900,
      consoleEnabled: false,
    });
  });
  it('rejects values AWS would reject', () => {
    assert.throws(() => resolveSettings({ busName: 'default' }), /busName/);
    assert.throws(() => resolveSettings({ eventSource: 'aws.orders' }), /eventSource/);
    assert.throws(() => resolveSettings({ jwtIssuer: 'http://insecure' , jwtAudience: ['a'] }), /jwtIssuer/);
    assert.throws(() => resolveSettings({ jwtAudience: ['a'] }), /jwtIssuer is not/);
    assert.throws(() => resolveSettings({ jwtIssuer: 'https://issuer.example.com', jwtAudience: ['a'], allowAnonymous: true }), /choose one/);
    assert.throws(() => resolveSettings({ allowAnonymous: true, jwtReadScope: 'orders read' }), /jwtReadScope/);
    assert.throws(() => resolveSettings({ allowAnonymous: true, jwtWriteScope: '' }), /jwtWriteScope/);
    assert.throws(() => resolveSettings({ logRetentionDays: 10 }), /logRetentionDays/);
    assert.throws(() => resolveSettings({ archiveRetentionDays: 0 }), /archiveRetentionDays/);
    assert.throws(() => resolveSettings({ corsOrigins: ['example.com/path'] }), /corsOrigins/);
  });
});

describe('event schema (registry, JSON Schema draft 4)', () => {
  const detail = readDetailSchema();
  assert.ok(detail, `${DETAIL_SCHEMA_FILE} must exist`);
  const doc = eventSchemaDraft4(detail, ROUTES.source);

  const placed = {
    event: {
      eventId: '01890a5d-ac96-774b-bcce-b302099a8057', orderId: 'ord-1', version: 1, type: 'OrderPlaced',
      schemaVersion: 1, occurredAt: '2026-11-23T10:00:00Z', status: 'received',
      data: { description: 'Fix the boiler', registerDate: '2026-11-23T10:00:00Z', deliveryDate: '2026-12-01', customerId: null },
      metadata: { correlationId: 'c-1', causationId: null, actor: null, idempotencyKey: 'k-1' },
      prevHash: '0'.repeat(64), hash: 'a'.repeat(64),
    },
    order: {
      orderId: 'ord-1', status: 'received', version: 1, description: 'Fix the boiler',
      registerDate: '2026-11-23T10:00:00Z', createdAt: '2026-11-23T10:00:00Z', updatedAt: '2026-11-23T10:00:00Z',
      deliveryDate: '2026-12-01',
    },
  };
  const envelope = (d: unknown, detailType = 'OrderPlaced') => ({
    version: '0', id: '6a7e8feb-b491-4cf7-a9f1-bf3703467718', 'detail-type': detailType,
    source: ROUTES.source, account: '123456789012', time: '2026-11-23T10:00:00Z', region: 'eu-west-1',
    resources: [], detail: d,
  });
  const invalid: [string, unknown][] = [
    ['unknown status', { ...placed, order: { ...placed.order, status: 'shipped' } }],
    ['bad hash', { ...placed, event: { ...placed.event, hash: 'xyz' } }],
    ['missing order', { event: placed.event }],
    ['unknown metadata field', { ...placed, event: { ...placed.event, metadata: { ...placed.event.metadata, extra: 1 } } }],
    ['data of another type', { ...placed, event: { ...placed.event, type: 'OrderCanceled' } }],
  ];

  it('is draft 4: $schema draft-04, no $defs / const / $id left, every $ref resolves', () => {
    assert.equal(doc.$schema, 'http://json-schema.org/draft-04/schema#');
    const text = JSON.stringify(doc);
    assert.ok(!text.includes('"$defs"'));
    assert.ok(!text.includes('"const"'));
    assert.ok(!text.includes('"$id"'));
    assert.ok(!text.includes('2020-12'));
    const refs = collectRefs(doc);
    assert.ok(refs.length > 10);
    for (const r of refs) assert.ok(resolvePointer(doc, r) !== undefined, r);
  });
  it('compiles under a draft 4 validator and agrees with the 2020-12 original on samples', () => {
    const v4 = new AjvDraft04({ strict: false, allErrors: true });
    addFormats(v4);
    const v2020 = new Ajv2020({ strict: false, allErrors: true });
    addFormats(v2020);
    const validate4 = v4.compile(doc);
    const validateDetail = v2020.compile(detail);
    assert.ok(validateDetail(placed), JSON.stringify(validateDetail.errors));
    assert.ok(validate4(envelope(placed)), JSON.stringify(validate4.errors));
    for (const [why, d] of invalid) {
      assert.equal(validateDetail(d), false, `2020-12 accepts ${why}`);
      assert.equal(validate4(envelope(d)), false, `draft 4 accepts ${why}`);
    }
    assert.equal(validate4(envelope(placed, 'OrderShipped')), false, 'unknown detail-type');
    assert.equal(validate4({ ...envelope(placed), source: 'someone.else' }), false, 'other source');
  });
  it('converts 2020-12 keywords schemars may emit', () => {
    const d = eventSchemaDraft4({
      $schema: 'https://json-schema.org/draft/2020-12/schema', title: 'T', type: 'object',
      properties: {
        n: { type: 'integer', exclusiveMinimum: 0, maximum: 9 },
        t: { type: 'array', prefixItems: [{ type: 'string' }, true], items: false },
        c: { const: 'x' },
        r: { $ref: '#' },
        f: false,
      },
      $defs: { A: { type: 'string' } },
    }, 's');
    const t = (d.definitions as any).T;
    assert.deepEqual(t.properties.n, { type: 'integer', minimum: 0, exclusiveMinimum: true, maximum: 9 });
    assert.deepEqual(t.properties.t, { type: 'array', items: [{ type: 'string' }, {}], additionalItems: false });
    assert.deepEqual(t.properties.c, { enum: ['x'] });
    assert.deepEqual(t.properties.r, { $ref: '#/definitions/T' });
    assert.deepEqual(t.properties.f, { not: {} });
    assert.deepEqual((d.definitions as any).A, { type: 'string' });
  });
  it('is published in the template as a JSONSchemaDraft4 schema in the registry', () => {
    const { json } = synth();
    const registries = ofType(json, 'AWS::EventSchemas::Registry');
    const schemas = ofType(json, 'AWS::EventSchemas::Schema');
    assert.equal(registries.length, 1);
    assert.equal(schemas.length, 1);
    const p = schemas[0][1].Properties;
    assert.equal(p.Type, 'JSONSchemaDraft4');
    assert.deepEqual(p.RegistryName, { 'Fn::GetAtt': [registries[0][0], 'RegistryName'] });
    assert.equal(p.SchemaName, `${ROUTES.source}@OrderEvent`);
    assert.deepEqual(JSON.parse(p.Content), doc);
  });
});
