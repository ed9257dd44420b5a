/** Shared helpers: synthesize the app in-process (Rust bundling skipped) and read its template. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { buildApp, BuildOptions } from '../lib/app';
import { OrdersourceSettings } from '../lib/config';
import { OrdersourceStack } from '../lib/ordersource-stack';
import { loadRouteTable } from '../lib/routes';

/** The route table the stack is generated from (tests derive their expectations from it). */
export const ROUTES = loadRouteTable();

export type Resources = Record<string, { Type: string; Properties?: any; DependsOn?: unknown; DeletionPolicy?: string; UpdateReplacePolicy?: string; Metadata?: any }>;

export interface Synth {
  readonly stack: OrdersourceStack;
  readonly template: Template;
  readonly json: { Resources: Resources; Outputs?: Record<string, unknown> };
}

const cache = new Map<string, Synth>();

/**
 * The stack's template for some settings (memoized per settings within one test file).
 * cdk-nag and CDK's built-in template validation are off here (speed): synth.test.ts runs
 * both, and cfn-lint, on full app synths.
 */
export function synth(settings: Partial<OrdersourceSettings> = {}, opts: Omit<BuildOptions, 'settings'> = {}): Synth {
  // The stack refuses to synthesize without a JWT issuer unless anonymous access is asked for
  // explicitly: tests that do not name an issuer ask for it here.
  if (settings.jwtIssuer === undefined && settings.allowAnonymous === undefined && opts.context?.jwtIssuer === undefined) {
    settings = { allowAnonymous: true, ...settings };
  }
  const key = JSON.stringify([settings, opts]);
  const hit = cache.get(key);
  if (hit) return hit;
  const { stack } = buildApp({
    skipRustBuild: true,
    nag: false,
    builtinValidation: false,
    ...opts,
    // As the CLI does: record each asset's source path in the template metadata.
    context: { 'aws:cdk:enable-asset-metadata': true, ...opts.context },
    settings,
  });
  // Cycles are cfn-lint's job (E3004, in synth.test.ts); the assertion library's own cycle
  // check costs ~10 s on this template.
  const template = Template.fromStack(stack, { skipCyclicalDependenciesCheck: true });
  const result = { stack, template, json: template.toJSON() as Synth['json'] };
  cache.set(key, result);
  return result;
}

/** A fresh temporary directory, removed when the process exits. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Resources of one type, as [logicalId, resource] pairs. */
export function ofType(json: Synth['json'], type: string): [string, Resources[string]][] {
  return Object.entries(json.Resources).filter(([, r]) => r.Type === type);
}

/** The logical id that a `{Ref}` / `{Fn::GetAtt}` points at, or undefined. */
export function refId(v: any): string | undefined {
  if (v && typeof v === 'object') {
    if (typeof v.Ref === 'string') return v.Ref;
    if (Array.isArray(v['Fn::GetAtt'])) return v['Fn::GetAtt'][0];
  }
  return undefined;
}

/** Every logical id referenced anywhere inside a value. */
export function refsIn(v: any, acc: Set<string> = new Set()): Set<string> {
  if (Array.isArray(v)) v.forEach((x) => refsIn(x, acc));
  else if (v && typeof v === 'object') {
    const id = refId(v);
    if (id) acc.add(id);
    for (const x of Object.values(v)) refsIn(x, acc);
  }
  return acc;
}

export const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** The queue resource with this physical name. */
export function queueNamed(json: Synth['json'], name: string): [string, Resources[string]] {
  const found = ofType(json, 'AWS::SQS::Queue').filter(([, r]) => r.Properties?.QueueName === name);
  if (found.length !== 1) throw new Error(`expected one queue named ${name}, found ${found.length}`);
  return found[0];
}

/** The Lambda function whose environment has ORDERS_HANDLER = handler. */
export function handlerFunction(json: Synth['json'], handler: string): [string, Resources[string]] {
  const found = ofType(json, 'AWS::Lambda::Function')
    .filter(([, r]) => r.Properties?.Environment?.Variables?.ORDERS_HANDLER === handler);
  if (found.length !== 1) throw new Error(`expected one function with ORDERS_HANDLER=${handler}, found ${found.length}`);
  return found[0];
}

/** The function built from this cargo binary (by the description the stack gives it). */
export function functionsOf(json: Synth['json'], binary: 'orders-api' | 'orders-projector' | 'orders-handler' | 'orders-intake'): [string, Resources[string]][] {
  const prefix = { 'orders-api': 'OrdersApi', 'orders-projector': 'OrdersProjector', 'orders-handler': 'Handler', 'orders-intake': 'OrdersIntake' }[binary];
  return ofType(json, 'AWS::Lambda::Function').filter(([id]) => id.startsWith(prefix));
}

/** The statements of the IAM policies attached to a role (its own inline ones and AWS::IAM::Policy). */
export function roleStatements(json: Synth['json'], roleId: string): any[] {
  const role = json.Resources[roleId];
  const out: any[] = [];
  for (const p of role.Properties?.Policies ?? []) out.push(...asArray(p.PolicyDocument.Statement));
  for (const [, p] of ofType(json, 'AWS::IAM::Policy')) {
    if ((p.Properties.Roles ?? []).some((r: any) => refId(r) === roleId)) {
      out.push(...asArray(p.Properties.PolicyDocument.Statement));
    }
  }
  return out;
}
