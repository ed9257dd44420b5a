/**
 * The ledger table holds the API's idempotency keys, each handler's claims and the live-table
 * pointer: every role that touches it is held to its own partition keys by
 * `dynamodb:LeadingKeys` (the namespaces of backend/src/ledger_key.rs). The values are
 * written out here, not imported, so that a change on either side shows.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  asArray, functionsOf, handlerFunction, ofType, refId, refsIn, roleStatements, ROUTES, synth,
} from './helpers';

const { json } = synth();
const [ledgerId] = ofType(json, 'AWS::DynamoDB::Table')
  .find(([, t]) => t.Properties.KeySchema[0].AttributeName === 'pk')!;

/** Every statement of a function's role that names the ledger table, by Sid. */
function ledgerStatements(fnId: string): Record<string, any> {
  const roleId = refId(json.Resources[fnId].Properties.Role)!;
  const statements = roleStatements(json, roleId).filter((s) => refsIn(s.Resource).has(ledgerId));
  return Object.fromEntries(statements.map((s) => [s.Sid, s]));
}

describe('ledger keys per role (dynamodb:LeadingKeys)', () => {
  it('orders-api: its clients\' keys under api/, and the live-table pointer read-only', () => {
    const [fnId] = functionsOf(json, 'orders-api')[0];
    const st = ledgerStatements(fnId);
    assert.deepEqual(Object.keys(st).sort(), ['IdempotencyLedger', 'LiveTablePointer']);
    assert.deepEqual(asArray(st.IdempotencyLedger.Action).sort(),
      ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem']);
    assert.deepEqual(st.IdempotencyLedger.Condition, {
      'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['api/*'] },
    });
    assert.deepEqual(asArray(st.LiveTablePointer.Action), ['dynamodb:GetItem']);
    assert.deepEqual(st.LiveTablePointer.Condition, {
      'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['read-model#live'] },
    });
  });

  for (const route of ROUTES.routes) {
    it(`orders-handler ${route.handler}: only its own claims, under handler/${route.handler}/`, () => {
      const [fnId] = handlerFunction(json, route.handler);
      const st = ledgerStatements(fnId);
      assert.deepEqual(Object.keys(st), ['HandlerLedger']);
      assert.deepEqual(st.HandlerLedger.Condition, {
        'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`handler/${route.handler}/*`] },
      });
    });
  }

  it('the reference handlers are the four statuses\' (so the literal keys above are the real ones)', () => {
    assert.deepEqual(ROUTES.routes.map((r) => r.handler).sort(),
      ['canceled', 'completed', 'inprocess', 'received']);
  });

  it('every statement on the ledger, of every role, is held to leading keys', () => {
    for (const [roleId] of ofType(json, 'AWS::IAM::Role')) {
      for (const s of roleStatements(json, roleId).filter((x) => refsIn(x.Resource).has(ledgerId))) {
        const keys = Object.values(s.Condition ?? {}).map((c: any) => c['dynamodb:LeadingKeys']);
        assert.ok(keys.length === 1 && keys[0]?.length, `${roleId} ${s.Sid}: ${JSON.stringify(s.Condition)}`);
      }
    }
  });
});
