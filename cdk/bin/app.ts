#!/usr/bin/env node
/**
 * CDK entry point. `SKIP_RUST_BUILD=1` synthesizes without compiling the Rust Lambdas
 * (`npm run synth`: for tests and review; not deployable). Without it, cargo-lambda must be on
 * PATH and builds every function's `bootstrap` (arm64) during synth/deploy.
 */
import { buildApp } from '../lib/app';

let built: ReturnType<typeof buildApp>;
try {
  built = buildApp({ skipRustBuild: Boolean(process.env.SKIP_RUST_BUILD) });
} catch (e) {
  // A refused setting (e.g. no jwtIssuer and no allowAnonymous=true): the message, not a trace.
  console.error(`ordersource: ${(e as Error).message}`);
  process.exit(1);
}
built.app.synth();
