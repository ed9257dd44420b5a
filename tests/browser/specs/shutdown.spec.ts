import { expect, test } from '../support/fixtures';

test('orders dev stops promptly on SIGTERM, before its drain deadline, while console pages hold live streams open', async ({
  page,
  context,
  service,
}) => {
  const second = await context.newPage();
  const streamsOpen = [page, second].map((p) =>
    p.waitForResponse((r) => new URL(r.url()).pathname === '/console/events' && r.status() === 200),
  );
  await page.goto('/');
  await second.goto('/console/orders');
  await Promise.all(streamsOpen);

  const began = Date.now();
  await service.stop();
  // The streams end on the shutdown signal; a stream left open would hold the graceful
  // shutdown until the server's 5 s drain deadline, and the server would say so.
  expect(Date.now() - began, 'milliseconds from SIGTERM to exit').toBeLessThan(4_000);
  const log = service.logTail(20_000);
  expect(log).not.toBe('(no log)');
  expect(log).not.toContain('connections still open at the drain deadline');

  // Leave before the pages' streams try to reconnect to the stopped server.
  await second.close();
  await page.goto('about:blank');
});
