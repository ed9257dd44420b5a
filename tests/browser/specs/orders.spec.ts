import { expectConsolePage } from '../support/console';
import { expect, test } from '../support/fixtures';

// The console lists 25 orders a page.
const PLACED = 27;

test('the orders list pages newest first, filters by status and finds an order by id', async ({ page, api, snap }) => {
  const placed = [];
  for (let i = 1; i <= PLACED; i++) placed.push(await api.place(`Paging order ${i}`));
  const started = placed[3];
  await api.transition(started.orderId, 'start');

  await page.goto('/console/orders');
  await expectConsolePage(page, 'Orders');
  const list = page.getByRole('table').filter({ has: page.getByRole('columnheader', { name: 'Order', exact: true }) });
  const rows = list.getByRole('row').filter({ has: page.getByRole('link') });
  // The read model catches up with the last placement: newest first.
  await expect(rows.first()).toContainText(placed[PLACED - 1].orderId);
  await expect(rows).toHaveCount(25);
  await snap('orders-first-page');

  await page.getByRole('link', { name: 'Next page' }).click();
  await expect(rows).toHaveCount(PLACED - 25);
  await expect(rows.nth(0)).toContainText(placed[1].orderId);
  await expect(rows.nth(1)).toContainText(placed[0].orderId);
  await expect(page.getByRole('link', { name: 'Next page' })).toHaveCount(0);

  // Choosing a status applies it at once (the Search button does the same without scripts).
  await page.getByLabel('Status').selectOption('inprocess');
  await expect(page).toHaveURL(/[?&]status=inprocess\b/);
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText(started.orderId);
  await expect(rows.first()).toContainText('inprocess');
  await snap('orders-inprocess');

  await page.getByLabel('Status').selectOption('');
  await expect(page).not.toHaveURL(/[?&]status=inprocess\b/);
  await expect(rows).toHaveCount(25);
  await page.getByLabel('Order id').fill(placed[10].orderId);
  await page.getByRole('button', { name: 'Search', exact: true }).click();
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText(placed[10].orderId);
  await rows.first().getByRole('link', { name: placed[10].orderId }).click();
  await expectConsolePage(page, new RegExp(placed[10].orderId));
});
