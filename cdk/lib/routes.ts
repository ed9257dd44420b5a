/**
 * The route table (status -> EventBridge rule -> SQS queue (+DLQ) -> handler) and the intake
 * queue (+DLQ) beside it, read at synth time from the one file the Rust side also reads:
 * `events-schema/routes.json`. This module only loads and validates it; nothing in `cdk/`
 * keeps a second copy of the routes or of the intake queue.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The repository root (this file lives in `<repo>/cdk/lib`). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');

/** Where the route table lives. */
export const ROUTES_FILE = path.join(REPO_ROOT, 'events-schema', 'routes.json');

/** One route of `routes.json`, field for field. */
export interface Route {
  readonly status: string;
  readonly rule: string;
  /** The EventBridge event pattern, exactly as written in the file. */
  readonly eventPattern: Record<string, unknown>;
  readonly queue: string;
  readonly deadLetterQueue: string;
  readonly maxReceiveCount: number;
  readonly visibilityTimeoutSeconds: number;
  readonly batchSize: number;
  readonly handler: string;
}

/** The intake queue of `routes.json`: commands from the web, mobile and ATM channels. */
export interface IntakeQueue {
  readonly queue: string;
  readonly deadLetterQueue: string;
  readonly maxReceiveCount: number;
  readonly visibilityTimeoutSeconds: number;
  readonly batchSize: number;
}

export interface RouteTable {
  /** The event source the file was written for (`ordersource.orders`). */
  readonly source: string;
  readonly intake: IntakeQueue;
  readonly routes: readonly Route[];
}

function fail(file: string, message: string): never {
  throw new Error(`${file}: ${message}`);
}

function requireString(file: string, where: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) {
    fail(file, `${where} must be a non-empty string`);
  }
  return value;
}

function requireInt(file: string, where: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(file, `${where} must be an integer in ${min}..${max}`);
  }
  return value;
}

/**
 * Reads and validates the route table. Throws with the file name and the offending field on
 * anything the CDK app could not turn into valid resources (limits are the AWS ones: SQS
 * visibility timeout 0..43200 s, maxReceiveCount 1..1000, SQS event source batch size 1..10
 * without a batching window).
 */
export function loadRouteTable(file: string = ROUTES_FILE): RouteTable {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf-8'));
  } catch (e) {
    fail(file, `cannot read the route table: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null) fail(file, 'must be a JSON object');
  const doc = raw as Record<string, unknown>;
  const source = requireString(file, 'source', doc.source);
  if (!Array.isArray(doc.routes) || doc.routes.length === 0) {
    fail(file, 'routes must be a non-empty array');
  }
  const seen = new Map<string, Set<string>>();
  const unique = (field: string, value: string, where: string) => {
    const values = seen.get(field) ?? new Set<string>();
    if (values.has(value)) fail(file, `${where}.${field} "${value}" is used twice`);
    values.add(value);
    seen.set(field, values);
  };
  const routes = doc.routes.map((r: unknown, i: number): Route => {
    const where = `routes[${i}]`;
    if (typeof r !== 'object' || r === null) fail(file, `${where} must be an object`);
    const o = r as Record<string, unknown>;
    const pattern = o.eventPattern;
    if (typeof pattern !== 'object' || pattern === null || Array.isArray(pattern)) {
      fail(file, `${where}.eventPattern must be an object`);
    }
    const route: Route = {
      status: requireString(file, `${where}.status`, o.status),
      rule: requireString(file, `${where}.rule`, o.rule),
      eventPattern: pattern as Record<string, unknown>,
      queue: requireString(file, `${where}.queue`, o.queue),
      deadLetterQueue: requireString(file, `${where}.deadLetterQueue`, o.deadLetterQueue),
      maxReceiveCount: requireInt(file, `${where}.maxReceiveCount`, o.maxReceiveCount, 1, 1000),
      visibilityTimeoutSeconds: requireInt(
        file, `${where}.visibilityTimeoutSeconds`, o.visibilityTimeoutSeconds, 1, 43200),
      batchSize: requireInt(file, `${where}.batchSize`, o.batchSize, 1, 10),
      handler: requireString(file, `${where}.handler`, o.handler),
    };
    for (const field of ['status', 'rule', 'queue', 'handler'] as const) {
      unique(field, route[field], where);
    }
    unique('queue', route.deadLetterQueue, where);
    return route;
  });
  if (typeof doc.intake !== 'object' || doc.intake === null || Array.isArray(doc.intake)) {
    fail(file, 'intake must be an object');
  }
  const i = doc.intake as Record<string, unknown>;
  const intake: IntakeQueue = {
    queue: requireString(file, 'intake.queue', i.queue),
    deadLetterQueue: requireString(file, 'intake.deadLetterQueue', i.deadLetterQueue),
    maxReceiveCount: requireInt(file, 'intake.maxReceiveCount', i.maxReceiveCount, 1, 1000),
    visibilityTimeoutSeconds: requireInt(
      file, 'intake.visibilityTimeoutSeconds', i.visibilityTimeoutSeconds, 1, 43200),
    batchSize: requireInt(file, 'intake.batchSize', i.batchSize, 1, 10),
  };
  unique('queue', intake.queue, 'intake');
  unique('queue', intake.deadLetterQueue, 'intake');
  return { source, intake, routes };
}

/**
 * The rule's event pattern for a stack whose events carry `source`: the file's pattern
 * unchanged, except that a `source` filter naming the file's own source is pointed at the
 * configured one (so a stack deployed with another event source still routes its events).
 */
export function patternFor(route: Route, fileSource: string, source: string): Record<string, unknown> {
  const pattern = structuredClone(route.eventPattern);
  if (source !== fileSource && Array.isArray(pattern.source)) {
    pattern.source = pattern.source.map((s: unknown) => (s === fileSource ? source : s));
  }
  return pattern;
}
