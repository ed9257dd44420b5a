import { execFileSync } from 'node:child_process';
import { defineConfig } from '@playwright/test';

// Playwright's own browser download is not reachable from the project's machines, so the
// tests drive Debian's chromium-headless-shell (pinned in scripts/test). CHROMIUM_PATH
// points at another build.
function chromiumPath(): string {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  try {
    return execFileSync('sh', ['-c', 'command -v chromium-headless-shell'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(
      'chromium-headless-shell not found: install it (apt-get install --no-install-recommends ' +
        'chromium-headless-shell) or set CHROMIUM_PATH to a Chromium binary',
    );
  }
}

// Chromium's sandbox refuses to start as root (containers, CI images).
const rootArgs = process.getuid?.() === 0 ? ['--no-sandbox', '--disable-gpu', '--no-first-run'] : [];

export default defineConfig({
  testDir: './specs',
  outputDir: './test-results',
  // 2-core machine shared with the Rust build: one browser at a time.
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: [['list'], ['html', { open: 'never', outputFolder: './playwright-report' }]],
  use: {
    headless: true,
    screenshot: 'on',
    trace: 'retain-on-failure',
    launchOptions: { executablePath: chromiumPath(), args: rootArgs },
  },
  projects: [
    {
      name: 'desktop',
      testIgnore: /phone\.spec\.ts/,
      use: { viewport: { width: 1280, height: 800 } },
    },
    {
      // The read-only pages at phone width; the action scenarios run on the desktop.
      name: 'phone',
      testMatch: /phone\.spec\.ts/,
      use: { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
    },
  ],
});
