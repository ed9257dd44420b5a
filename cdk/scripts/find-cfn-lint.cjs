/**
 * Where cfn-lint is: $CFN_LINT if set, else `cfn-lint` on PATH. Shared by scripts/test.mjs
 * (fails fast before the tests) and test/synth.test.ts (runs it on the synthesized templates).
 */
const fs = require('node:fs');
const path = require('node:path');

const HOW_TO_INSTALL =
  'cfn-lint not found. Set CFN_LINT to its path or put it on PATH, e.g.\n' +
  "  python3 -m venv ../.venv && ../.venv/bin/pip install 'cfn-lint==1.58.*' && export PATH=\"$PWD/../.venv/bin:$PATH\"";

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The cfn-lint executable, or throws an Error whose message says how to get it. */
function findCfnLint(env = process.env) {
  if (env.CFN_LINT) {
    if (!isExecutable(env.CFN_LINT)) {
      throw new Error(`CFN_LINT=${env.CFN_LINT} is not an executable file.\n${HOW_TO_INSTALL}`);
    }
    return env.CFN_LINT;
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, 'cfn-lint');
    if (isExecutable(candidate)) return candidate;
  }
  throw new Error(HOW_TO_INSTALL);
}

module.exports = { findCfnLint, HOW_TO_INSTALL };
