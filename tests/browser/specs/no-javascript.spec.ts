import { expectConsolePage, field, section } from '../support/console';
import { expect, test } from '../support/fixtures';

test.use({ javaScriptEnabled: false });

test('the read-only pages are readable without JavaScript', async ({ page, api, snap }) => {
  const order = await api.place('Read without scripts: a lamp');
  await api.transition(order.orderId, 'start');

  await page.goto('/');
  await expectConsolePage(page, 'Overview');
  await expect(page.getByRole('table', { name: 'Orders by status' })).toBeVisible();
  await expect(page.getByRole('table', { name: 'Queues' })).toBeVisible();

  await page.goto('/console/orders');
  await expectConsolePage(page, 'Orders');
  await page.getByRole('link', { name: order.orderId }).click();
  await expectConsolePage(page, new RegExp(order.orderId));
  await expect(field(page, 'Status')).toHaveText('inprocess');
  await expect(section(page, 'Events')).toContainText('OrderStarted');
  await snap('order-without-javascript');

  await page.goto('/console/dead-letters');
  await expectConsolePage(page, 'Dead letters');
  await page.goto('/console/audit');
  await expectConsolePage(page, 'Audit');
});
