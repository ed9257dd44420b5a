import { expect, test } from '../support/fixtures';

test('orders dev stops promptly on SIGTERM while console pages hold live streams open', async ({
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
  // shutdown until the fixture's 10 s deadline.
  expect(Date.now() - began, 'milliseconds from SIGTERM to exit').toBeLessThan(3_000);

  // Leave before the pages' streams try to reconnect to the stopped server.
  await second.close();
  await page.goto('about:blank');
});
