import { expectConsolePage } from '../support/console';
import { expect, test } from '../support/fixtures';

test('the audit page verifies one order and all orders and shows the result', async ({ page, api, snap }) => {
  const first = await api.place('Audit me: a ladder');
  await api.transition(first.orderId, 'start');
  await api.place('Audit me too: a bucket');

  await page.goto('/console/audit');
  await expectConsolePage(page, 'Audit');
  const result = page.getByRole('status');

  await page.getByLabel('Order id').fill(first.orderId);
  await page.getByRole('button', { name: 'Verify order', exact: true }).click();
  await expect(result).toContainText(/\bOK\b/);
  await expect(result).toContainText(/\b2 events?\b/);
  await snap('audit-one');

  await page.getByRole('button', { name: 'Verify all', exact: true }).click();
  await expect(result).toContainText(/\bOK\b/);
  await expect(result).toContainText(/\b2 orders\b/);
  await expect(result).toContainText(/\b3 events\b/);
  await snap('audit-all');
});
