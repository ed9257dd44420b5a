import { test as base, expect, type APIRequestContext, type Page, type Request, type TestInfo } from '@playwright/test';
import { OrdersDev } from './service';

export { expect };
export { FAIL_MARKER } from './service';

/** An order as the API returns it. */
export interface Order {
  orderId: string;
  status: string;
  version: number;
  description: string;
  createdAt: string;
}

/** Setup and checks through the service's real HTTP API (the same one clients use). */
export class Api {
  constructor(private readonly request: APIRequestContext) {}

  async place(description: string): Promise<Order> {
    const response = await this.request.post('/orders', { data: { description } });
    expect(response.status(), await response.text()).toBe(201);
    return ((await response.json()) as { order: Order }).order;
  }

  async order(id: string): Promise<Order> {
    const response = await this.request.get(`/orders/${encodeURIComponent(id)}`);
    expect(response.status(), await response.text()).toBe(200);
    return (await response.json()) as Order;
  }

  async transition(id: string, action: 'start' | 'complete'): Promise<Order> {
    const response = await this.request.post(`/orders/${encodeURIComponent(id)}/${action}`);
    expect(response.status(), await response.text()).toBe(200);
    return ((await response.json()) as { order: Order }).order;
  }
}

interface Fixtures {
  service: OrdersDev;
  api: Api;
  /** Fails the test on any console error, page error, failed or external request. */
  browserProblems: string[];
  /** Keeps a full-page screenshot of the page as a test artifact. */
  snap: (name: string, page?: Page) => Promise<void>;
}

export const test = base.extend<Fixtures>({
  service: async ({}, use, testInfo) => {
    const service = await OrdersDev.start();
    try {
      await use(service);
    } finally {
      if (testInfo.status !== testInfo.expectedStatus) {
        await testInfo.attach('orders-dev.log', { body: service.logTail(20_000), contentType: 'text/plain' });
      }
      await service.stop();
    }
  },

  baseURL: async ({ service }, use) => {
    await use(service.baseURL);
  },

  api: async ({ request }, use) => {
    await use(new Api(request));
  },

  browserProblems: [
    // Needs `page`, so its check runs while the page is still open: what closing the page
    // aborts at the end of a test is not the console's doing.
    async ({ page, context, baseURL }, use) => {
      const problems: string[] = [];
      const openedStreams = new WeakSet<Request>();
      const origin = new URL(baseURL!).origin;
      const watch = (page: Page) => {
        page.on('console', (message) => {
          if (message.type() === 'error') problems.push(`console error on ${page.url()}: ${message.text()}`);
        });
        page.on('pageerror', (error) => problems.push(`uncaught error on ${page.url()}: ${error.message}`));
        page.on('request', (request) => {
          const url = new URL(request.url());
          if (url.protocol !== 'data:' && url.origin !== origin) problems.push(`external request: ${request.url()}`);
        });
        page.on('requestfailed', (request) => {
          if (!(openedStreams.has(request) && request.failure()?.errorText === 'net::ERR_ABORTED')) {
            problems.push(`request failed: ${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
          }
        });
        page.on('response', (response) => {
          if (response.status() === 200 && response.headers()['content-type']?.startsWith('text/event-stream')) {
            openedStreams.add(response.request());
          }
          if (response.status() >= 400) {
            problems.push(`HTTP ${response.status()}: ${response.request().method()} ${response.url()}`);
          }
        });
      };
      // Chromium reports every EventSource that ends on the page's side (closed on
      // `pagehide`, or by navigation) as aborted after its 200 answer: a stream that ran,
      // not a failure. Anything else aborted (a page, a fragment, a refused stream) counts.
      watch(page);
      context.on('page', watch);
      await use(problems);
      expect(problems, 'console errors and failed requests in the browser').toEqual([]);
    },
    { auto: true },
  ],

  snap: async ({ page }, use, testInfo) => {
    await use(async (name, target = page) => {
      await screenshot(target, testInfo, name);
    });
  },
});

/** Keeps `<name>.png` in the test's folder under test-results (a CI artifact). */
async function screenshot(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const path = testInfo.outputPath(`${name}.png`);
  // caret: 'initial' leaves the inputs alone: hiding the caret leaves an empty `style`
  // attribute on them, which htmx then copies into the elements it swaps in, and the
  // console's Content-Security-Policy (style-src 'self') reports that as a console error.
  await page.screenshot({ path, fullPage: true, caret: 'initial' });
}
