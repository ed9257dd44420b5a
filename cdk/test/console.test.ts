/**
 * The operator console setting: off by default (no console routes, no console environment,
 * no queue access for the API function); on, its routes sit behind the API's JWT
 * authorizer with the API's scopes and the API function may read and redrive the queues.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildApp } from '../lib/app';
import { asArray, functionsOf, ofType, queueNamed, refId, refsIn, roleStatements, ROUTES, synth } from './helpers';

const ISSUER = 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example';
const CONSOLE_ROUTES = ['GET /', 'GET /console', 'GET /console/{proxy+}', 'POST /console/{proxy+}'];

function routesOf(json: ReturnType<typeof synth>['json']): Record<string, any> {
  return Object.fromEntries(ofType(json, 'AWS::ApiGatewayV2::Route').map(([, r]) => [r.Properties.RouteKey, r.Properties]));
}

function apiFunction(json: ReturnType<typeof synth>['json']): [string, any] {
  const found = functionsOf(json, 'orders-api');
  assert.equal(found.length, 1);
  return found[0];
}

/** The SQS actions the API function's role may take on the queue with this name. */
function sqsActionsOn(json: ReturnType<typeof synth>['json'], queueName: string): string[] {
  const [, fn] = apiFunction(json);
  const [queueId] = queueNamed(json, queueName);
  return roleStatements(json, refId(fn.Properties.Role)!)
    .filter((st) => refsIn(st.Resource).has(queueId))
    .flatMap((st) => asArray<string>(st.Action))
    .filter((a) => a.startsWith('sqs:'));
}

describe('the console, off by default', () => {
  const { json } = synth({ jwtIssuer: ISSUER, jwtAudience: ['client'] });

  it('adds no console route and does not turn the console on in the API function', () => {
    const routes = routesOf(json);
    for (const key of CONSOLE_ROUTES) assert.equal(routes[key], undefined, key);
    const [, fn] = apiFunction(json);
    assert.equal(fn.Properties.Environment.Variables.ORDERS_CONSOLE, undefined);
  });

  it('gives the API function no access to the queues', () => {
    for (const route of [...ROUTES.routes, ROUTES.intake]) {
      assert.deepEqual(sqsActionsOn(json, route.queue), [], route.queue);
      assert.deepEqual(sqsActionsOn(json, route.deadLetterQueue), [], route.deadLetterQueue);
    }
  });
});

describe('the console, turned on', () => {
  const { json } = synth({ jwtIssuer: ISSUER, jwtAudience: ['client'], consoleEnabled: true, queueNamePrefix: 'stg-' });

  it('routes its pages with the read scope and its actions with the write scope, behind the JWT authorizer', () => {
    const routes = routesOf(json);
    const [authorizerId] = ofType(json, 'AWS::ApiGatewayV2::Authorizer')[0];
    for (const key of CONSOLE_ROUTES) {
      const route = routes[key];
      assert.ok(route, `route ${key}`);
      assert.equal(route.AuthorizationType, 'JWT', key);
      assert.equal(refId(route.AuthorizerId), authorizerId, key);
      assert.deepEqual(route.AuthorizationScopes, [key.startsWith('POST') ? 'orders/write' : 'orders/read'], key);
    }
  });

  it('turns the console on in the API function, with the queue name prefix', () => {
    const vars = apiFunction(json)[1].Properties.Environment.Variables;
    assert.equal(vars.ORDERS_CONSOLE, 'enabled');
    assert.equal(vars.ORDERS_QUEUE_PREFIX, 'stg-');
  });

  it('lets the API function read each queue (the intake queue too), take dead letters off its DLQ and send them back', () => {
    for (const route of [...ROUTES.routes, ROUTES.intake]) {
      const queue = sqsActionsOn(json, `stg-${route.queue}`);
      for (const a of ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage']) assert.ok(queue.includes(a), `${a} on ${route.queue}: ${queue}`);
      assert.ok(!queue.includes('sqs:ReceiveMessage'), `no ReceiveMessage on ${route.queue}: its handler consumes it`);
      const dlq = sqsActionsOn(json, `stg-${route.deadLetterQueue}`);
      for (const a of ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes']) {
        assert.ok(dlq.includes(a), `${a} on ${route.deadLetterQueue}: ${dlq}`);
      }
    }
  });

  it('is read from CDK context as true or false', () => {
    const { stack } = buildApp({ skipRustBuild: true, nag: false, builtinValidation: false, context: { allowAnonymous: 'true', consoleEnabled: 'true' } });
    assert.equal(stack.settings.consoleEnabled, true);
    assert.throws(() => buildApp({ skipRustBuild: true, nag: false, context: { allowAnonymous: 'true', consoleEnabled: 'yes' } }), /consoleEnabled/);
  });
});
