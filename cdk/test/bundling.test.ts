/**
 * The deploy path (no SKIP_RUST_BUILD): synth asks cargo-lambda to build each binary for
 * arm64 in its crate and packages the `bootstrap` it writes. A stand-in `cargo` on PATH
 * records the calls, so this runs without Rust or cargo-lambda.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { buildApp, STACK_NAME } from '../lib/app';
import { REPO_ROOT } from '../lib/routes';
import { tempDir } from './helpers';

describe('Lambda bundling with cargo-lambda', () => {
  it('builds orders-api, orders-projector and orders-handler (arm64, the size profile lambda) from their crates', () => {
    const bin = tempDir('fake-cargo-');
    const log = path.join(bin, 'calls.log');
    fs.writeFileSync(path.join(bin, 'cargo'), `#!/usr/bin/env bash
echo "$PWD :: $*" >> '${log}'
if [ "$1 $2" = "lambda --version" ]; then echo "cargo-lambda (stand-in)"; exit 0; fi
if [ "$1 $2" = "lambda build" ]; then
  while [ $# -gt 0 ]; do [ "$1" = "--lambda-dir" ] && dir=$2; shift; done
  mkdir -p "$dir" && printf 'not a real binary' > "$dir/bootstrap"; exit 0
fi
exit 1
`, { mode: 0o755 });
    const oldPath = process.env.PATH;
    process.env.PATH = `${bin}${path.delimiter}${oldPath}`;
    const outdir = tempDir('ordersource-bundled-');
    try {
      const { app } = buildApp({
        skipRustBuild: false, nag: false, builtinValidation: false, outdir,
        context: { 'aws:cdk:enable-asset-metadata': true },
        settings: { allowAnonymous: true },
      });
      app.synth();
    } finally {
      process.env.PATH = oldPath;
    }
    const builds = fs.readFileSync(log, 'utf-8').split('\n').filter((l) => l.includes(':: lambda build'));
    const byBinary = new Map(builds.map((l) => {
      const [cwd, args] = l.split(' :: ');
      const words = args.split(' ');
      return [words[words.indexOf('--bin') + 1], { cwd, words }];
    }));
    assert.deepEqual([...byBinary.keys()].sort(), ['orders-api', 'orders-handler', 'orders-intake', 'orders-projector']);
    assert.equal(byBinary.get('orders-api')!.cwd, path.join(REPO_ROOT, 'command-api'));
    assert.equal(byBinary.get('orders-projector')!.cwd, path.join(REPO_ROOT, 'projector'));
    assert.equal(byBinary.get('orders-handler')!.cwd, path.join(REPO_ROOT, 'handlers'));
    assert.equal(byBinary.get('orders-intake')!.cwd, path.join(REPO_ROOT, 'command-api'));
    for (const { words } of byBinary.values()) {
      assert.ok(words.includes('--arm64'));
      assert.equal(words[words.indexOf('--profile') + 1], 'lambda');
      assert.ok(!words.includes('--release'));
    }
    // Every function's code is a staged asset holding the bootstrap.
    const template = JSON.parse(fs.readFileSync(path.join(outdir, `${STACK_NAME}.template.json`), 'utf-8'));
    const assetPaths = Object.values<any>(template.Resources)
      .filter((r) => r.Type === 'AWS::Lambda::Function')
      .map((r) => r.Metadata?.['aws:asset:path']);
    assert.equal(assetPaths.length, 7);
    for (const p of assetPaths) {
      assert.ok(fs.existsSync(path.join(outdir, p, 'bootstrap')), `${p} has a bootstrap`);
    }
  });
});
