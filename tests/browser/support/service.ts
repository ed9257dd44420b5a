import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

/** Handlers fail every event whose order description contains this text (a test hook). */
export const FAIL_MARKER = 'POISON';

const STARTUP_TIMEOUT_MS = 15_000;
const SHUTDOWN_TIMEOUT_MS = 10_000;

/** The `orders` binary: `ORDERS_BIN`, or the workspace's debug build (scripts/test builds it). */
export function ordersBin(): string {
  return process.env.ORDERS_BIN ?? path.resolve(__dirname, '../../../target/debug/orders');
}

/**
 * A real `orders dev` (the whole service in one process) on a fresh data directory and a
 * free port, with quick retries and the handler failure hook, so a poison order reaches
 * its dead-letter queue in seconds.
 */
export class OrdersDev {
  private constructor(
    readonly baseURL: string,
    private readonly child: ChildProcess,
    /** The service's data directory (`orders.db` in it), for tests that tamper with it. */
    readonly dataDir: string,
    private readonly logPath: string,
  ) {}

  static async start(): Promise<OrdersDev> {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'orders-browser-'));
    const logPath = path.join(dataDir, 'orders-dev.log');
    const log = openSync(logPath, 'a');
    const bin = ordersBin();
    // The flags below decide; the developer's own settings must not.
    const env: NodeJS.ProcessEnv = { ...process.env, RUST_LOG: process.env.BROWSER_RUST_LOG ?? 'warn' };
    delete env.ORDERS_LISTEN;
    delete env.ORDERS_DATA;
    const child = spawn(
      bin,
      [
        'dev',
        '--data', dataDir,
        '--listen', '127.0.0.1:0',
        '--visibility-timeout', '1',
        '--handler-fail-marker', FAIL_MARKER,
      ],
      {
        env,
        stdio: ['ignore', 'pipe', log],
      },
    );
    closeSync(log);
    try {
      const baseURL = await firstLine(child, bin, logPath);
      return new OrdersDev(baseURL, child, dataDir, logPath);
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
  }

  /** The end of the service's log (kept after the data directory is removed). */
  logTail(chars = 4000): string {
    return (this.finalLog ?? readLog(this.logPath)).slice(-chars);
  }

  private finalLog?: string;

  /**
   * SIGTERM (so an instrumented binary writes its coverage profile) and waits for the exit;
   * SIGKILL only after the deadline, and then the shutdown is reported as a failure, since
   * open console streams must not hold the server up. Stopping twice waits for the first.
   */
  async stop(): Promise<void> {
    this.stopping ??= this.terminate();
    return this.stopping;
  }

  private stopping?: Promise<void>;

  private async terminate(): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) {
      this.cleanUp();
      throw new Error(`orders dev exited early (${child.exitCode ?? child.signalCode})\nlog:\n${this.logTail()}`);
    }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const inTime = await Promise.race([
      exited.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), SHUTDOWN_TIMEOUT_MS)),
    ]);
    if (!inTime) {
      child.kill('SIGKILL');
      await exited;
    }
    this.cleanUp();
    const tail = this.logTail();
    if (!inTime) {
      throw new Error(`orders dev did not stop within ${SHUTDOWN_TIMEOUT_MS} ms of SIGTERM\nlog:\n${tail}`);
    }
    if (child.exitCode !== 0) {
      throw new Error(`orders dev exited with ${child.exitCode ?? child.signalCode} after SIGTERM\nlog:\n${tail}`);
    }
  }

  private cleanUp(): void {
    this.finalLog = readLog(this.logPath);
    if (!process.env.BROWSER_KEEP_DATA) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

function readLog(logPath: string): string {
  try {
    return readFileSync(logPath, 'utf8');
  } catch {
    return '(no log)';
  }
}

/** Reads the `listening on http://127.0.0.1:PORT` line, within a deadline. */
function firstLine(child: ChildProcess, bin: string, logPath: string): Promise<string> {
  const log = () => readLog(logPath).slice(-4000);
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(
      () => reject(new Error(`${bin} dev printed no address within ${STARTUP_TIMEOUT_MS} ms\nlog:\n${log()}`)),
      STARTUP_TIMEOUT_MS,
    );
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${bin}: ${e.message} (build it with \`cargo build -p orders\` or set ORDERS_BIN)`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${bin} dev exited (${code ?? signal}) before listening\nlog:\n${log()}`));
    });
    lines.once('line', (line) => {
      clearTimeout(timer);
      const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (match) resolve(match[1]);
      else reject(new Error(`expected \`listening on http://127.0.0.1:PORT\` on stdout, got ${JSON.stringify(line)}`));
      // Keep draining stdout so the process never blocks on a full pipe.
      child.stdout!.resume();
    });
  });
}
