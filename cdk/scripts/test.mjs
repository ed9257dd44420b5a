#!/usr/bin/env node
// `npm test`: everything that checks the CDK app, offline, without compiling Rust.
//   1. cfn-lint is there ($CFN_LINT, else on PATH) — fail fast with how to get it;
//   2. tsc --noEmit;
//   3. the tests (template assertions, settings, route table, event schema, cdk-nag, cfn-lint
//      on in-process synths): node --import tsx --test test/*.test.ts;
//   4. `cdk synth` through the CLI (as `npm run synth` does, with its example JWT issuer) into a temporary directory, and
//      cfn-lint on that template too: it is the one an outside check reads.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { findCfnLint } = require('./find-cfn-lint.cjs');
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);

function step(title, cmd, args, env = {}) {
  console.log(`\n== ${title}`);
  const started = Date.now();
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.error) {
    console.error(`npm test: ${title}: ${r.error.message}`);
    process.exit(1);
  }
  if (r.status !== 0) {
    console.error(`npm test: ${title} failed (exit ${r.status})`);
    process.exit(r.status ?? 1);
  }
  console.log(`== ${title}: ok (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

let cfnLint;
try {
  cfnLint = findCfnLint();
} catch (e) {
  console.error(`npm test: ${e.message}`);
  process.exit(1);
}
const version = spawnSync(cfnLint, ['--version'], { encoding: 'utf-8' });
console.log(`cfn-lint: ${cfnLint} (${(version.stdout || version.stderr || '').trim()})`);

step('typecheck (tsc --noEmit)', bin('tsc'), ['--noEmit']);

const tests = readdirSync(join(root, 'test')).filter((f) => f.endsWith('.test.ts')).map((f) => join('test', f));
step('tests', process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...tests],
  { CFN_LINT: cfnLint });

const out = mkdtempSync(join(tmpdir(), 'ordersource-cdk-out-'));
try {
  step('cdk synth (CLI, Rust build skipped)', bin('cdk'), ['synth', '--no-notices', '-q', '-o', out,
    // The stack refuses to synthesize without an issuer (or an explicit allowAnonymous=true):
    // the checked template is the authenticated one, with an example issuer.
    '-c', 'jwtIssuer=https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example', '-c', 'jwtAudience=example-client'],
    { SKIP_RUST_BUILD: '1', AWS_EC2_METADATA_DISABLED: 'true' });
  const templates = readdirSync(out).filter((f) => f.endsWith('.template.json')).map((f) => join(out, f));
  if (templates.length === 0) {
    console.error('npm test: cdk synth wrote no template');
    process.exit(1);
  }
  step('cfn-lint on the CLI-synthesized template', cfnLint, templates);
} finally {
  rmSync(out, { recursive: true, force: true });
}
console.log('\nnpm test: all checks passed');
