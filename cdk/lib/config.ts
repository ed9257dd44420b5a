/**
 * The stack's settings: their defaults, their validation, and how they are read from CDK
 * context (`-c key=value` on the command line, or `context` in cdk.json).
 */
import type { Node } from 'constructs';

export interface OrdersourceSettings {
  /** Name of the custom EventBridge bus. Context `busName`. Default `ordersource`. */
  readonly busName: string;
  /**
   * EventBridge `Source` of the order events; also `ORDERS_EVENT_SOURCE` for the projector.
   * Context `eventSource`. Default: the `source` of events-schema/routes.json.
   */
  readonly eventSource?: string;
  /** HTTP API stage steady-state rate limit (requests/s). Context `throttleRateLimit`. Default 100. */
  readonly throttleRateLimit: number;
  /** HTTP API stage burst limit. Context `throttleBurstLimit`. Default 200. */
  readonly throttleBurstLimit: number;
  /**
   * CORS allowed origins of the HTTP API. Context `corsOrigins` (JSON array or comma list).
   * Default none: no CORS preflight configuration at all.
   */
  readonly corsOrigins: readonly string[];
  /**
   * JWT issuer URL (e.g. `https://cognito-idp.<region>.amazonaws.com/<userPoolId>`). When set,
   * every route except `GET /health` and `GET /openapi.json` requires a JWT from it.
   * Context `jwtIssuer`. Required unless `allowAnonymous` is true: without either the synth fails.
   */
  readonly jwtIssuer?: string;
  /**
   * Deploy the API without any authorizer (trials only). Context `allowAnonymous=true`.
   * Default false: a stack without `jwtIssuer` is refused.
   */
  readonly allowAnonymous: boolean;
  /** OAuth scope a JWT needs for the read routes (GET). Context `jwtReadScope`. Default `orders/read`. */
  readonly jwtReadScope: string;
  /** OAuth scope a JWT needs for the write routes (POST/PUT/…, everything not GET). Context `jwtWriteScope`. Default `orders/write`. */
  readonly jwtWriteScope: string;
  /** Accepted JWT audiences (Cognito: the app client ids). Context `jwtAudience`. Required with `jwtIssuer`. */
  readonly jwtAudience: readonly string[];
  /** Retention of the bus archive, in days. Context `archiveRetentionDays`. Default 365. */
  readonly archiveRetentionDays: number;
  /** Retention of the Lambda and API access log groups, in days. Context `logRetentionDays`. Default 30. */
  readonly logRetentionDays: number;
  /** Prefix for the SQS queue names of the routes (to deploy two stacks in one account). Context `queueNamePrefix`. Default ''. */
  readonly queueNamePrefix: string;
  /** `RUST_LOG` of every function. Context `rustLog`. Default `info`. */
  readonly rustLog: string;
  /** Optional e-mail address subscribed to the alarm topic. Context `alarmEmail`. */
  readonly alarmEmail?: string;
  /**
   * ARN of the operator IAM role that may publish on the bus besides the projector (for
   * `orders republish`). Context `operatorRoleArn`. Default unset: the stack creates one
   * (output `OperatorRoleArn`), assumable from this account.
   */
  readonly operatorRoleArn?: string;
  /**
   * Seconds a document link stays valid: `GET /orders/{id}/documents/{name}` redirects to a
   * presigned S3 GET that expires after this long (`ORDERS_DOCUMENT_LINK_EXPIRY_SECONDS` of
   * the API function). Context `documentLinkExpirySeconds`. Default 900 (15 minutes); 1 up to
   * 604800 (7 days, S3's limit).
   */
  readonly documentLinkExpirySeconds: number;
  /**
   * Serves the operator console (docs/console.md) from the API function: `GET /`,
   * `/console` and `/console/{proxy+}` (read scope) and `POST /console/{proxy+}` (write
   * scope), behind the same JWT authorizer as the API, and lets the API function read the
   * route queues and redrive their dead letters. Context `consoleEnabled`. Default false:
   * the API function then answers those paths with its JSON 404.
   */
  readonly consoleEnabled: boolean;
}

export const DEFAULT_SETTINGS: OrdersourceSettings = {
  busName: 'ordersource',
  throttleRateLimit: 100,
  throttleBurstLimit: 200,
  corsOrigins: [],
  jwtAudience: [],
  allowAnonymous: false,
  jwtReadScope: 'orders/read',
  jwtWriteScope: 'orders/write',
  archiveRetentionDays: 365,
  logRetentionDays: 30,
  queueNamePrefix: '',
  rustLog: 'info',
  documentLinkExpirySeconds: 900,
  consoleEnabled: false,
};

/** Log retention values CloudWatch Logs accepts. */
export const VALID_LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
  3288, 3653,
];

function asString(key: string, value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new Error(`context ${key} must be a string`);
  return value;
}

function asNumber(key: string, value: unknown): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isFinite(n)) throw new Error(`context ${key} must be a number, got ${JSON.stringify(value)}`);
  return n;
}

function asList(key: string, value: unknown): string[] | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  let v: unknown = value;
  if (typeof v === 'string') {
    const s = v.trim();
    v = s.startsWith('[') ? JSON.parse(s) : s.split(',').map((x) => x.trim()).filter((x) => x);
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw new Error(`context ${key} must be a list of strings (JSON array or comma-separated)`);
  }
  return v;
}

function asBoolean(key: string, value: unknown): boolean | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new Error(`context ${key} must be true or false, got ${JSON.stringify(value)}`);
}

/** Settings from CDK context, over the defaults. Unknown keys are ignored. */
export function settingsFromContext(node: Node): Partial<OrdersourceSettings> {
  const get = (k: string): unknown => node.tryGetContext(k);
  const out: Record<string, unknown> = {
    busName: asString('busName', get('busName')),
    eventSource: asString('eventSource', get('eventSource')),
    throttleRateLimit: asNumber('throttleRateLimit', get('throttleRateLimit')),
    throttleBurstLimit: asNumber('throttleBurstLimit', get('throttleBurstLimit')),
    corsOrigins: asList('corsOrigins', get('corsOrigins')),
    jwtIssuer: asString('jwtIssuer', get('jwtIssuer')),
    jwtAudience: asList('jwtAudience', get('jwtAudience')),
    allowAnonymous: asBoolean('allowAnonymous', get('allowAnonymous')),
    jwtReadScope: asString('jwtReadScope', get('jwtReadScope')),
    jwtWriteScope: asString('jwtWriteScope', get('jwtWriteScope')),
    archiveRetentionDays: asNumber('archiveRetentionDays', get('archiveRetentionDays')),
    logRetentionDays: asNumber('logRetentionDays', get('logRetentionDays')),
    queueNamePrefix: asString('queueNamePrefix', get('queueNamePrefix')),
    rustLog: asString('rustLog', get('rustLog')),
    alarmEmail: asString('alarmEmail', get('alarmEmail')),
    operatorRoleArn: asString('operatorRoleArn', get('operatorRoleArn')),
    documentLinkExpirySeconds: asNumber('documentLinkExpirySeconds', get('documentLinkExpirySeconds')),
    consoleEnabled: asBoolean('consoleEnabled', get('consoleEnabled')),
  };
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out as Partial<OrdersourceSettings>;
}

/** Defaults + overrides, validated. Throws on a setting AWS would reject at deploy time. */
export function resolveSettings(overrides: Partial<OrdersourceSettings> = {}): OrdersourceSettings {
  const s: OrdersourceSettings = { ...DEFAULT_SETTINGS, ...overrides };
  const errors: string[] = [];
  if (!/^[A-Za-z0-9._-]{1,256}$/.test(s.busName) || s.busName === 'default') {
    errors.push(`busName "${s.busName}" must be 1..256 of [A-Za-z0-9._-] and not "default"`);
  }
  if (s.eventSource !== undefined && (!/^[A-Za-z0-9._-]{1,256}$/.test(s.eventSource) || s.eventSource.startsWith('aws.'))) {
    errors.push(`eventSource "${s.eventSource}" must be 1..256 of [A-Za-z0-9._-] and not start with "aws."`);
  }
  if (!Number.isInteger(s.throttleRateLimit) || s.throttleRateLimit < 1) {
    errors.push('throttleRateLimit must be a positive integer');
  }
  if (!Number.isInteger(s.throttleBurstLimit) || s.throttleBurstLimit < 1) {
    errors.push('throttleBurstLimit must be a positive integer');
  }
  if (s.jwtIssuer === undefined && s.allowAnonymous !== true) {
    errors.push('no jwtIssuer: the API is authenticated by default. Give -c jwtIssuer=https://... -c jwtAudience=<client id> '
      + '(or settings.jwtIssuer/jwtAudience), or -c allowAnonymous=true to deploy an API anyone may call (trials only)');
  }
  if (s.jwtIssuer !== undefined && s.allowAnonymous === true) {
    errors.push('allowAnonymous=true and jwtIssuer are both set: choose one');
  }
  const scope = /^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/;
  if (!scope.test(s.jwtReadScope)) errors.push(`jwtReadScope "${s.jwtReadScope}" must be 1..128 printable characters without spaces, quotes or backslashes`);
  if (!scope.test(s.jwtWriteScope)) errors.push(`jwtWriteScope "${s.jwtWriteScope}" must be 1..128 printable characters without spaces, quotes or backslashes`);
  if (s.jwtIssuer !== undefined) {
    if (!/^https:\/\/\S+$/.test(s.jwtIssuer)) errors.push('jwtIssuer must be an https:// URL');
    if (s.jwtAudience.length === 0) errors.push('jwtAudience must name at least one audience when jwtIssuer is set');
  } else if (s.jwtAudience.length > 0) {
    errors.push('jwtAudience is set but jwtIssuer is not');
  }
  if (!Number.isInteger(s.archiveRetentionDays) || s.archiveRetentionDays < 1) {
    errors.push('archiveRetentionDays must be a positive integer (an archive kept forever is not allowed here)');
  }
  if (!Number.isInteger(s.documentLinkExpirySeconds) || s.documentLinkExpirySeconds < 1 || s.documentLinkExpirySeconds > 604800) {
    errors.push('documentLinkExpirySeconds must be a whole number of seconds from 1 to 604800 (7 days, the longest a presigned S3 URL may live)');
  }
  if (!VALID_LOG_RETENTION_DAYS.includes(s.logRetentionDays)) {
    errors.push(`logRetentionDays must be one of ${VALID_LOG_RETENTION_DAYS.join(', ')}`);
  }
  if (!/^[A-Za-z0-9_-]{0,40}$/.test(s.queueNamePrefix)) {
    errors.push('queueNamePrefix must be 0..40 of [A-Za-z0-9_-]');
  }
  for (const o of s.corsOrigins) {
    if (o !== '*' && !/^https?:\/\/[^\s/]+$/.test(o)) errors.push(`corsOrigins entry "${o}" must be "*" or a scheme://host[:port] origin`);
  }
  if (s.operatorRoleArn !== undefined && !/^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@\/-]{1,512}$/.test(s.operatorRoleArn)) {
    errors.push(`operatorRoleArn "${s.operatorRoleArn}" must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)`);
  }
  if (errors.length > 0) throw new Error(`invalid ordersource settings:\n  - ${errors.join('\n  - ')}`);
  return s;
}
