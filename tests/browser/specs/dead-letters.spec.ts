import { cell, expectConsolePage, rowNamed, section } from '../support/console';
import { expect, FAIL_MARKER, test } from '../support/fixtures';

// A poison message is received 5 times (the route's max receive count), 1 s apart
// (`--visibility-timeout 1`), before it is dead-lettered.
const DEAD_LETTERED_WITHIN = 30_000;

test('a poison message reaches the dead letters page with its error, and a redrive from the page takes it off the list', async ({
  page,
  api,
  request,
  snap,
}) => {
  const order = await api.place(`${FAIL_MARKER}: a handler fails on this order`);

  // The overview shows it arrive, live.
  await page.goto('/');
  const queues = page.getByRole('table', { name: 'Queues' });
  const receivedQueue = rowNamed(queues, 'order-received');
  await expect(await cell(queues, receivedQueue, 'Dead letters')).toHaveText('1', { timeout: DEAD_LETTERED_WITHIN });
  await snap('overview-dead-letter');

  await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Dead letters', exact: true }).click();
  await expectConsolePage(page, 'Dead letters');
  const queue = section(page, 'order-received');
  const table = queue.getByRole('table');
  for (const header of ['Message', 'Order', 'Event', 'Receive count', 'Last error']) {
    await expect(table.getByRole('columnheader', { name: header, exact: true })).toBeVisible();
  }
  const message = table.getByRole('row').filter({ hasText: order.orderId });
  await expect(message).toHaveCount(1);
  await expect(await cell(table, message, 'Order')).toContainText(order.orderId);
  await expect(await cell(table, message, 'Event')).toContainText(/OrderPlaced|[0-9a-f]{8}-[0-9a-f]{4}/);
  await expect(await cell(table, message, 'Receive count')).toHaveText('5');
  await expect(await cell(table, message, 'Last error')).toContainText('failure marker');
  // One dead letter: "Redrive" names exactly one button on the page ("Redrive all" comes
  // with a second one), so asking for "Redrive" as a person would is not ambiguous.
  await expect(page.getByRole('button', { name: 'Redrive' })).toHaveCount(1);
  await snap('dead-letters');

  // Dismissing the confirmation moves nothing: no request is sent.
  const redrives: string[] = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().includes('/redrive')) redrives.push(r.url());
  });
  page.once('dialog', (dialog) => void dialog.dismiss());
  await message.getByRole('button', { name: 'Redrive', exact: true }).click();
  expect(redrives, 'redrive requests after a dismissed confirmation').toEqual([]);
  await expect(message).toHaveCount(1);

  let confirmed = '';
  page.once('dialog', (dialog) => {
    confirmed = dialog.message();
    void dialog.accept();
  });
  await message.getByRole('button', { name: 'Redrive', exact: true }).click();
  await expect(message).toHaveCount(0);
  expect(confirmed, 'the browser asked for confirmation').not.toBe('');
  expect(redrives).toHaveLength(1);
  await expect(queue.getByRole('status')).toHaveText(/moved 1 message/i);
  await snap('dead-letters-redriven');
  const health = (await (await request.get('/health')).json()) as { queues: { queue: string; deadLetters: number }[] };
  expect(health.queues.find((q) => q.queue === 'order-received')?.deadLetters).toBe(0);

  // Still poison: it fails its 5 tries again and comes back, with a second poison order
  // beside it; with two, "Redrive all" moves both.
  const second = await api.place(`${FAIL_MARKER}: a second order a handler fails on`);
  const rows = queue.getByRole('row').filter({ hasText: new RegExp(`${order.orderId}|${second.orderId}`) });
  await expect(async () => {
    await page.reload();
    await expect(rows).toHaveCount(2, { timeout: 1_000 });
  }).toPass({ timeout: DEAD_LETTERED_WITHIN });
  page.once('dialog', (dialog) => void dialog.accept());
  await queue.getByRole('button', { name: 'Redrive all', exact: true }).click();
  await expect(rows).toHaveCount(0);
  await expect(queue.getByRole('status')).toHaveText(/moved 2 messages/i);
});
