/**
 * Builds the CDK app: the ordersource stack, configured from context, checked by cdk-nag's
 * AwsSolutions rules (a validation plugin: any unacknowledged finding fails the synth).
 * Shared by bin/app.ts (the CLI) and the tests, so both synthesize the same thing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, AppProps, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { OrdersourceSettings, settingsFromContext } from './config';
import { OrdersourceStack, OrdersourceStackProps } from './ordersource-stack';

export const STACK_NAME = 'Ordersource';

export interface BuildOptions {
  /** Skip cargo-lambda bundling (synth without compiling Rust; such an assembly is not deployable). */
  readonly skipRustBuild?: boolean;
  /** Settings over the context ones. */
  readonly settings?: Partial<OrdersourceSettings>;
  /** Extra context (as `-c key=value` would give). */
  readonly context?: Record<string, unknown>;
  /** Cloud assembly directory. */
  readonly outdir?: string;
  /** Run the cdk-nag AwsSolutions checks at synth (default true). */
  readonly nag?: boolean;
  /**
   * Run CDK's built-in CloudFormation validation at synth (default true). Template-assertion
   * tests turn it off for speed; the synth tests, `npm run synth` and deploys keep it.
   */
  readonly builtinValidation?: boolean;
  readonly stackProps?: Omit<OrdersourceStackProps, 'settings'>;
}

/**
 * The `context` of cdk.json (the feature flags this app was written against). The CLI passes
 * it itself; reading it here too gives in-process tests the very same app.
 */
export function cdkJsonContext(): Record<string, unknown> {
  const file = path.join(__dirname, '..', 'cdk.json');
  return (JSON.parse(fs.readFileSync(file, 'utf-8')) as { context?: Record<string, unknown> }).context ?? {};
}

export function buildApp(opts: BuildOptions = {}): { app: App; stack: OrdersourceStack } {
  const appProps: AppProps = {
    outdir: opts.outdir,
    builtinCloudFormationValidation: opts.builtinValidation ?? true,
    context: { ...cdkJsonContext(), ...opts.context },
    // `-c aws:cdk:bundling-stacks=[]` is rejected by the CLI; postCliContext is not.
    postCliContext: opts.skipRustBuild ? { 'aws:cdk:bundling-stacks': [] } : undefined,
  };
  const app = new App(appProps);
  const settings = { ...settingsFromContext(app.node), ...opts.settings };
  const stack = new OrdersourceStack(app, STACK_NAME, {
    description: 'ordersource: event-sourced order service (Rust Lambdas, DynamoDB, EventBridge, SQS, HTTP API)',
    // Environment-agnostic: deploys to the account/region of the caller's credentials.
    ...opts.stackProps,
    settings,
  });
  if (opts.nag ?? true) {
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { writeSuppressionsToCloudFormation: true }));
  }
  return { app, stack };
}
