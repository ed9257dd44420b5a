import { expectConsolePage, expectNotReloaded, markDocument, rowNamed } from '../support/console';
import { expect, test } from '../support/fixtures';

test('the overview and the orders list update live, without a reload, when an order is placed through the API', async ({
  page,
  api,
  snap,
}) => {
  await page.goto('/');
  await expectConsolePage(page, 'Overview');

  const byStatus = page.getByRole('table', { name: 'Orders by status' });
  for (const status of ['received', 'inprocess', 'completed', 'canceled']) {
    await expect(rowNamed(byStatus, status)).toBeVisible();
  }
  const receivedCount = rowNamed(byStatus, 'received').getByRole('cell', { name: /^\d+$/ });
  await expect(receivedCount).toHaveText('0');
  for (const figure of ['Commands per second', 'Projector lag', 'Parked records']) {
    await expect(page.getByText(figure, { exact: true })).toBeVisible();
  }
  const queues = page.getByRole('table', { name: 'Queues' });
  for (const header of ['Queue', 'Depth', 'In flight', 'Dead letters']) {
    await expect(queues.getByRole('columnheader', { name: header, exact: true })).toBeVisible();
  }
  for (const queue of ['order-received', 'order-inprocess', 'order-completed', 'order-canceled']) {
    await expect(rowNamed(queues, queue)).toBeVisible();
  }
  await snap('overview-empty');

  await markDocument(page);
  const first = await api.place('Two pallets of tiles');
  await expect(receivedCount).toHaveText('1');
  await expectNotReloaded(page);
  await snap('overview-live');

  await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Orders', exact: true }).click();
  await expectConsolePage(page, 'Orders');
  const list = page.getByRole('table').filter({ has: page.getByRole('columnheader', { name: 'Order', exact: true }) });
  for (const header of ['Order', 'Status', 'Description', 'Created']) {
    await expect(list.getByRole('columnheader', { name: header, exact: true })).toBeVisible();
  }
  await expect(list.getByRole('link', { name: first.orderId })).toBeVisible();

  await markDocument(page);
  const second = await api.place('A crate of grout');
  const link = list.getByRole('link', { name: second.orderId });
  await expect(link).toBeVisible();
  await expectNotReloaded(page);
  // Newest first: the order placed last is the first row.
  await expect(list.getByRole('row').nth(1)).toContainText(second.orderId);
  await expect(list.getByRole('row').nth(2)).toContainText(first.orderId);
  await snap('orders-live');

  await link.click();
  await expect(page).toHaveURL(new RegExp(`/console/orders/${second.orderId}$`));
  await expect(page.getByRole('heading', { level: 1 })).toContainText(second.orderId);
});
