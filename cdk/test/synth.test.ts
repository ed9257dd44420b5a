/**
 * Whole-app synths as the CLI does them (Rust bundling skipped): cdk-nag AwsSolutions must
 * report no unacknowledged finding and give every acknowledgement a reason, and cfn-lint
 * must pass on the synthesized templates (default settings, and with every option on).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { buildApp, STACK_NAME } from '../lib/app';
import { OrdersourceSettings } from '../lib/config';
import { tempDir } from './helpers';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { findCfnLint } = require('../scripts/find-cfn-lint.cjs') as { findCfnLint: () => string };

interface Report {
  pluginReports: {
    pluginName: string;
    conclusion: string;
    violations: unknown[];
    suppressedViolations: { ruleName: string; acknowledgedId: string; reason: string; violatingConstructs: { constructPath: string }[] }[];
  }[];
}

const VARIANTS: Record<string, Partial<OrdersourceSettings>> = {
  'anonymous (allowAnonymous=true)': { allowAnonymous: true },
  'all options on': {
    jwtIssuer: 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example',
    jwtAudience: ['client-a'],
    corsOrigins: ['https://app.example.com'],
    eventSource: 'acme.orders',
    busName: 'acme',
    alarmEmail: 'oncall@example.com',
  },
};

function synthToDir(settings: Partial<OrdersourceSettings>): { dir: string; report: Report } {
  const dir = tempDir('ordersource-synth-');
  // CDK's built-in template validation is left to `npm run synth` (scripts/test.mjs runs it
  // through the CLI): its engine costs ~10 s to start, and cfn-lint checks the same here.
  const { app } = buildApp({ skipRustBuild: true, builtinValidation: false, outdir: dir, settings });
  app.synth(); // throws on any unacknowledged cdk-nag finding
  const report = JSON.parse(fs.readFileSync(path.join(dir, 'validation-report.json'), 'utf-8')) as Report;
  return { dir, report };
}

/** Every acknowledgement the stack makes, by rule, with where it applies. */
const EXPECTED_ACKS: Record<string, RegExp> = {
  // dynamodb:ListStreams (projector) and X-Ray's PutTraceSegments/PutTelemetryRecords
  // (active tracing, every function) cannot be scoped.
  'AwsSolutions-IAM5[Resource::*]': /^Ordersource\/(OrdersApi|OrdersProjector|OrdersIntake|Handler-[a-z]+)Role\//,
  // <documents bucket ARN>/* object resources (orders-api reads, handlers write).
  'AwsSolutions-IAM5[Resource::<DocumentsBucket9EC9DEB9.Arn>/orders/*]': /^Ordersource\/(OrdersApi|Handler-[a-z]+)Role\//,
  // <documents bucket ARN>/intake/* (orders-intake archives each accepted message).
  'AwsSolutions-IAM5[Resource::<DocumentsBucket9EC9DEB9.Arn>/intake/*]': /^Ordersource\/OrdersIntakeRole\//,
  // The tables `orders rebuild` creates beside the read model table (orders-api reads,
  // the projector writes whichever the live-table pointer names).
  'AwsSolutions-IAM5[Resource::<ReadModelTableE615DA28.Arn>-rebuild-*]': /^Ordersource\/(OrdersApi|OrdersProjector)Role\//,
  'AwsSolutions-IAM5[Resource::<ReadModelTableE615DA28.Arn>-rebuild-*/index/status-index]': /^Ordersource\/OrdersApiRole\//,
  // The stream on-failure queue is itself the dead-letter store.
  'AwsSolutions-SQS3': /^Ordersource\/ProjectorFailureQueue\//,
  // The access-log bucket does not log into itself.
  'AwsSolutions-S1': /^Ordersource\/AccessLogsBucket\//,
  // Authorizer off (allowAnonymous=true) / public health and openapi routes.
  'AwsSolutions-APIG4': /^Ordersource\/HttpApi\//,
};

/** With the authorizer on, only the two public routes may be acknowledged for APIG4. */
const PUBLIC_ROUTES_ONLY = /^Ordersource\/HttpApi\/GET--(health|openapi\.json)\//;

const synths = Object.entries(VARIANTS).map(([variant, settings]) => ({ variant, settings, ...synthToDir(settings) }));

for (const { variant, settings, report } of synths) {
  describe(`cdk-nag AwsSolutions (${variant})`, () => {
    it('no unacknowledged finding, each acknowledgement with a reason, in the expected places', () => {
      const nag = report.pluginReports.find((r) => r.pluginName === 'AwsSolutions');
      assert.ok(nag, 'the AwsSolutions plugin ran');
      assert.equal(nag.conclusion, 'success');
      assert.deepEqual(nag.violations, []);
      assert.ok(nag.suppressedViolations.length > 0);
      for (const s of nag.suppressedViolations) {
        assert.ok(s.reason && s.reason.length >= 40, `${s.ruleName} needs a real reason`);
        const where = EXPECTED_ACKS[s.ruleName];
        assert.ok(where, `unexpected acknowledgement ${s.ruleName}`);
        for (const c of s.violatingConstructs) {
          assert.match(c.constructPath, where, s.ruleName);
          if (settings.jwtIssuer && s.ruleName === 'AwsSolutions-APIG4') assert.match(c.constructPath, PUBLIC_ROUTES_ONLY);
        }
      }
    });
  });
}

describe('cfn-lint', () => {
  it(`passes on the templates (${synths.map((s) => s.variant).join(', ')})`, () => {
    const cfnLint = findCfnLint();
    const templates = synths.map((s) => path.join(s.dir, `${STACK_NAME}.template.json`));
    const run = spawnSync(cfnLint, templates, { encoding: 'utf-8' });
    assert.equal(run.error, undefined, String(run.error));
    assert.equal(run.status, 0, `cfn-lint ${templates.join(' ')}:\n${run.stdout}${run.stderr}`);
  });
});

describe('a nag finding fails the synth', () => {
  it('an unacknowledged wildcard in a role makes app.synth() throw', async () => {
    const iam = await import('aws-cdk-lib/aws-iam');
    const { app, stack } = buildApp({
      skipRustBuild: true, builtinValidation: false, outdir: tempDir('ordersource-bad-'), settings: { allowAnonymous: true } });
    stack.apiFunction.role!.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['dynamodb:*'], resources: ['*'] }));
    assert.throws(() => app.synth());
  });
});
