/**
 * Observability (issue 12 item 9): X-Ray active tracing on every function, and the
 * dashboard graphs the metrics the Rust mains write in the embedded metric format, under
 * the namespace and names backend/src/emf.rs uses.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from '../lib/routes';
import { asArray, ofType, roleStatements, ROUTES, synth } from './helpers';

const { json } = synth();

/** The dashboard's widgets, its body parsed with every CloudFormation reference as "REF". */
function dashboardWidgets(): any[] {
  const dashboards = ofType(json, 'AWS::CloudWatch::Dashboard');
  assert.equal(dashboards.length, 1);
  const body = dashboards[0][1].Properties.DashboardBody;
  const text = typeof body === 'string' ? body
    : body['Fn::Join'][1].map((part: unknown) => (typeof part === 'string' ? part : 'REF')).join('');
  return JSON.parse(text).widgets;
}

/** The widget with this title, and the metric expressions / metric arrays it graphs. */
function graph(title: string): { expressions: string[]; metrics: any[][] } {
  const widget = dashboardWidgets().find((w) => w.properties?.title === title);
  assert.ok(widget, `a widget titled ${title}`);
  const lines: any[][] = widget.properties.metrics;
  return {
    expressions: lines.flatMap((l) => l.filter((x: any) => x && typeof x === 'object' && x.expression).map((x: any) => x.expression)),
    metrics: lines.filter((l) => typeof l[0] === 'string'),
  };
}

describe('X-Ray', () => {
  const functions = ofType(json, 'AWS::Lambda::Function')
    .filter(([, r]) => r.Properties?.Runtime === 'provided.al2023');

  it('traces every Rust function actively: the API, the projector, one handler per route and the intake', () => {
    assert.equal(functions.length, 3 + ROUTES.routes.length);
    for (const [id, fn] of functions) {
      assert.deepEqual(fn.Properties.TracingConfig, { Mode: 'Active' }, id);
    }
  });

  it('lets each function write its segments (X-Ray actions have no resource-level permissions)', () => {
    for (const [id, fn] of functions) {
      const roleId = fn.Properties.Role['Fn::GetAtt'][0];
      const actions = roleStatements(json, roleId).flatMap((s) => asArray(s.Action));
      assert.ok(actions.includes('xray:PutTraceSegments') && actions.includes('xray:PutTelemetryRecords'), id);
    }
  });
});

describe('dashboard of the service metrics (EMF)', () => {
  it('graphs commands by command and outcome', () => {
    assert.deepEqual(graph('Commands by command and outcome').expressions,
      [`SEARCH('{Ordersource,Command,Outcome} MetricName="Commands"', 'Sum', 60)`]);
  });

  it('graphs duplicates by kind', () => {
    assert.deepEqual(graph('Duplicates (idempotent replays, redeliveries)').expressions,
      [`SEARCH('{Ordersource,Kind} MetricName="Duplicates"', 'Sum', 60)`]);
  });

  it('graphs documents written by handler', () => {
    assert.deepEqual(graph('Documents written by handler').expressions,
      [`SEARCH('{Ordersource,Handler} MetricName="DocumentsWritten"', 'Sum', 60)`]);
  });

  it('graphs parked records: the EMF count and the batches Lambda sent to the on-failure queue', () => {
    const { metrics } = graph('Parked stream records');
    assert.deepEqual(metrics.map((m) => m.slice(0, 2)), [
      ['Ordersource', 'ParkedRecords'],
      ['AWS/SQS', 'NumberOfMessagesSent'],
    ]);
  });

  it('uses the namespace and metric names the Rust emitter writes', () => {
    const emf = fs.readFileSync(path.join(REPO_ROOT, 'backend', 'src', 'emf.rs'), 'utf8');
    assert.match(emf, /pub const NAMESPACE: &str = "Ordersource";/);
    for (const [metric, dims] of [
      ['Commands', '&["Command", "Outcome"]'],
      ['Duplicates', '&["Kind"]'],
      ['ParkedRecords', '&[]'],
      ['DocumentsWritten', '&["Handler"]'],
    ]) {
      assert.ok(emf.includes(`Metric::${metric} => "${metric}"`), `${metric} is named so in emf.rs`);
      assert.ok(emf.includes(`Metric::${metric} => ${dims}`), `${metric} has dimensions ${dims} in emf.rs`);
    }
  });
});
