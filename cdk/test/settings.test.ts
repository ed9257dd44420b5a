/**
 * The stack's settings (props / CDK context) change what they promise and nothing else:
 * bus name, event source, throttling, CORS, JWT authorizer, archive retention.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildApp } from '../lib/app';
import { asArray, functionsOf, ofType, queueNamed, refId, ROUTES, synth } from './helpers';

const ISSUER = 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example';

describe('custom settings', () => {
  const { json } = synth({
    busName: 'acme-orders',
    eventSource: 'acme.orders',
    throttleRateLimit: 7,
    throttleBurstLimit: 11,
    archiveRetentionDays: 30,
    corsOrigins: ['https://app.example.com'],
    queueNamePrefix: 'stg-',
    rustLog: 'debug,hyper=info',
    documentLinkExpirySeconds: 120,
  });

  it('gives the API the document link expiry', () => {
    const [, api] = functionsOf(json, 'orders-api')[0];
    assert.equal(api.Properties.Environment.Variables.ORDERS_DOCUMENT_LINK_EXPIRY_SECONDS, '120');
  });

  it('names the bus and the schema registry', () => {
    assert.equal(ofType(json, 'AWS::Events::EventBus')[0][1].Properties.Name, 'acme-orders');
    assert.equal(ofType(json, 'AWS::EventSchemas::Registry')[0][1].Properties.RegistryName, 'acme-orders');
  });
  it('points every rule, the archive, the schema and the projector at the configured source', () => {
    for (const route of ROUTES.routes) {
      const [, rule] = ofType(json, 'AWS::Events::Rule').find(([, r]) => r.Properties.Name === route.rule)!;
      assert.deepEqual(rule.Properties.EventPattern.source, ['acme.orders']);
      // Everything but the source is the file's pattern.
      assert.deepEqual({ ...rule.Properties.EventPattern, source: undefined }, { ...route.eventPattern, source: undefined });
    }
    assert.deepEqual(ofType(json, 'AWS::Events::Archive')[0][1].Properties.EventPattern, { source: ['acme.orders'] });
    assert.equal(ofType(json, 'AWS::EventSchemas::Schema')[0][1].Properties.SchemaName, 'acme.orders@OrderEvent');
    const [, projector] = functionsOf(json, 'orders-projector')[0];
    assert.equal(projector.Properties.Environment.Variables.ORDERS_EVENT_SOURCE, 'acme.orders');
  });
  it('sets the archive retention', () => {
    assert.equal(ofType(json, 'AWS::Events::Archive')[0][1].Properties.RetentionDays, 30);
  });
  it('sets the stage throttling', () => {
    const p = ofType(json, 'AWS::ApiGatewayV2::Stage')[0][1].Properties;
    assert.equal(p.DefaultRouteSettings.ThrottlingRateLimit, 7);
    assert.equal(p.DefaultRouteSettings.ThrottlingBurstLimit, 11);
  });
  it('configures CORS for the given origins', () => {
    const cors = ofType(json, 'AWS::ApiGatewayV2::Api')[0][1].Properties.CorsConfiguration;
    assert.deepEqual(cors.AllowOrigins, ['https://app.example.com']);
    assert.ok(cors.AllowHeaders.includes('Idempotency-Key'));
    assert.ok(cors.AllowHeaders.includes('If-Match'));
    assert.ok(cors.ExposeHeaders.includes('ETag'));
  });
  it('prefixes the queue names', () => {
    for (const route of ROUTES.routes) {
      queueNamed(json, `stg-${route.queue}`);
      queueNamed(json, `stg-${route.deadLetterQueue}`);
    }
  });
  it('passes RUST_LOG to every function', () => {
    for (const [, f] of ofType(json, 'AWS::Lambda::Function')) {
      assert.equal(f.Properties.Environment.Variables.RUST_LOG, 'debug,hyper=info');
    }
  });
});

describe('JWT authorizer on', () => {
  const { json } = synth({ jwtIssuer: ISSUER, jwtAudience: ['client-a', 'client-b'] });
  it('creates a JWT authorizer with the issuer and audiences', () => {
    const auth = ofType(json, 'AWS::ApiGatewayV2::Authorizer');
    assert.equal(auth.length, 1);
    const p = auth[0][1].Properties;
    assert.equal(p.AuthorizerType, 'JWT');
    assert.deepEqual(p.JwtConfiguration, { Issuer: ISSUER, Audience: ['client-a', 'client-b'] });
    assert.deepEqual(p.IdentitySource, ['$request.header.Authorization']);
  });
  it('protects $default with it and leaves only GET /health and /openapi.json public', () => {
    const [authId] = ofType(json, 'AWS::ApiGatewayV2::Authorizer')[0];
    const routes = Object.fromEntries(ofType(json, 'AWS::ApiGatewayV2::Route').map(([, r]) => [r.Properties.RouteKey, r.Properties]));
    assert.equal(routes.$default.AuthorizationType, 'JWT');
    assert.equal(refId(routes.$default.AuthorizerId), authId);
    assert.equal(routes['GET /health'].AuthorizationType, 'NONE');
    assert.equal(routes['GET /openapi.json'].AuthorizationType, 'NONE');
    assert.equal(routes['GET /health'].AuthorizationScopes, undefined);
    assert.equal(routes['GET /openapi.json'].AuthorizationScopes, undefined);
    assert.equal(Object.keys(routes).length, 4);
  });
  it('write routes ($default: POST, PUT, …) need orders/write; read routes (GET) need orders/read', () => {
    const [authId] = ofType(json, 'AWS::ApiGatewayV2::Authorizer')[0];
    const routes = Object.fromEntries(ofType(json, 'AWS::ApiGatewayV2::Route').map(([, r]) => [r.Properties.RouteKey, r.Properties]));
    assert.deepEqual(routes.$default.AuthorizationScopes, ['orders/write']);
    assert.equal(routes['GET /{proxy+}'].AuthorizationType, 'JWT');
    assert.equal(refId(routes['GET /{proxy+}'].AuthorizerId), authId);
    assert.deepEqual(routes['GET /{proxy+}'].AuthorizationScopes, ['orders/read']);
  });
  it('the scope names are configurable', () => {
    const { json: other } = synth({
      jwtIssuer: ISSUER, jwtAudience: ['client-a'], jwtReadScope: 'acme/orders.read', jwtWriteScope: 'acme/orders.write' });
    const routes = Object.fromEntries(ofType(other, 'AWS::ApiGatewayV2::Route').map(([, r]) => [r.Properties.RouteKey, r.Properties]));
    assert.deepEqual(routes.$default.AuthorizationScopes, ['acme/orders.write']);
    assert.deepEqual(routes['GET /{proxy+}'].AuthorizationScopes, ['acme/orders.read']);
  });
});

describe('authenticated by default', () => {
  it('refuses to synthesize without jwtIssuer or allowAnonymous=true, with a message naming both', () => {
    assert.throws(() => buildApp({ skipRustBuild: true, nag: false }),
      /no jwtIssuer: the API is authenticated by default\. Give -c jwtIssuer=.*-c allowAnonymous=true/s);
    assert.throws(() => buildApp({ skipRustBuild: true, nag: false, context: { allowAnonymous: 'false' } }), /no jwtIssuer/);
    assert.throws(() => buildApp({ skipRustBuild: true, nag: false, context: { allowAnonymous: 'yes' } }), /allowAnonymous must be true or false/);
  });
  it('with -c allowAnonymous=true: no authorizer, no scopes, every route open', () => {
    const { stack } = buildApp({ skipRustBuild: true, nag: false, builtinValidation: false, context: { allowAnonymous: 'true' } });
    assert.equal(stack.settings.allowAnonymous, true);
    const { json } = synth({ allowAnonymous: true });
    assert.equal(ofType(json, 'AWS::ApiGatewayV2::Authorizer').length, 0);
    const routes = ofType(json, 'AWS::ApiGatewayV2::Route').map(([, r]) => r.Properties);
    assert.deepEqual(routes.map((r) => r.RouteKey).sort(), ['$default', 'GET /health', 'GET /openapi.json']);
    for (const r of routes) {
      assert.ok(r.AuthorizationType === undefined || r.AuthorizationType === 'NONE', r.RouteKey);
      assert.equal(r.AuthorizationScopes, undefined, r.RouteKey);
    }
  });
});

describe('settings from CDK context', () => {
  it('reads -c style string values', () => {
    const { stack } = buildApp({
      skipRustBuild: true,
      nag: false,
      context: {
        busName: 'ctx-bus',
        eventSource: 'ctx.orders',
        throttleRateLimit: '50',
        throttleBurstLimit: '60',
        corsOrigins: 'https://a.example.com, https://b.example.com',
        jwtIssuer: ISSUER,
        jwtAudience: '["aud-1"]',
        archiveRetentionDays: '90',
      },
    });
    assert.equal(stack.settings.busName, 'ctx-bus');
    assert.equal(stack.eventSource, 'ctx.orders');
    assert.equal(stack.settings.throttleRateLimit, 50);
    assert.equal(stack.settings.throttleBurstLimit, 60);
    assert.deepEqual(stack.settings.corsOrigins, ['https://a.example.com', 'https://b.example.com']);
    assert.deepEqual(stack.settings.jwtAudience, ['aud-1']);
    assert.equal(stack.settings.archiveRetentionDays, 90);
  });
  it('refuses an issuer without audience, and nonsense throttling', () => {
    assert.throws(() => buildApp({ skipRustBuild: true, nag: false, context: { jwtIssuer: ISSUER } }), /jwtAudience/);
    assert.throws(() => buildApp({ skipRustBuild: true, nag: false, context: { throttleRateLimit: 'fast' } }), /throttleRateLimit/);
    assert.throws(() => buildApp({ skipRustBuild: true, nag: false, settings: { throttleBurstLimit: 0 } }), /throttleBurstLimit/);
  });
  it('refuses a document link expiry S3 would not sign (0, over 7 days, fractions)', () => {
    for (const bad of ['0', '604801', '1.5', 'soon']) {
      assert.throws(() => buildApp({ skipRustBuild: true, nag: false, context: { allowAnonymous: 'true', documentLinkExpirySeconds: bad } }),
        /documentLinkExpirySeconds/, bad);
    }
  });
});

describe('the default queue policies name the rule ARN of their own route only', () => {
  const { json } = synth();
  it('no queue policy allows a rule of another route', () => {
    const ruleIds = new Map(ofType(json, 'AWS::Events::Rule').map(([id, r]) => [id, r.Properties.Name]));
    for (const route of ROUTES.routes) {
      const [queueId] = queueNamed(json, route.queue);
      const [, policy] = ofType(json, 'AWS::SQS::QueuePolicy').find(([, p]) => p.Properties.Queues.some((q: any) => refId(q) === queueId))!;
      const named = asArray(policy.Properties.PolicyDocument.Statement)
        .flatMap((s: any) => (s.Condition?.ArnEquals ? [ruleIds.get(refId(s.Condition.ArnEquals['aws:SourceArn'])!)] : []));
      assert.deepEqual(named, [route.rule]);
    }
  });
});
