import { expectNotReloaded, markDocument, rowNamed } from '../support/console';
import { expect, test } from '../support/fixtures';

test('a page whose live stream was cut catches up when the stream reconnects, without a reload', async ({
  page,
  api,
  snap,
}) => {
  // Until `connected`, every stream the page opens ends at once, as when a proxy or a
  // flaky network cuts it, and asks to be retried soon; then the page reaches the server.
  let connected = false;
  let cut = 0;
  await page.route('**/console/events', async (route) => {
    if (connected) return route.continue();
    cut += 1;
    return route.fulfill({ status: 200, contentType: 'text/event-stream', body: 'retry: 200\n\n' });
  });
  await page.goto('/');
  const receivedCount = rowNamed(page.getByRole('table', { name: 'Orders by status' }), 'received').getByRole('cell', {
    name: /^\d+$/,
  });
  await expect(receivedCount).toHaveText('0');
  await expect.poll(() => cut, { message: 'the page retries its cut stream' }).toBeGreaterThan(1);
  await markDocument(page);

  await api.place('Placed while the page was not listening');
  // Nothing told the page yet; give it a couple of its retries to prove that.
  await expect.poll(() => cut).toBeGreaterThan(cut + 1);
  await expect(receivedCount).toHaveText('0');

  connected = true;
  await expect(receivedCount).toHaveText('1');
  await expectNotReloaded(page);
  await snap('overview-after-reconnect');
});
