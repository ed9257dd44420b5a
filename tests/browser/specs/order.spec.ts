import { type Page } from '@playwright/test';
import { expectConsolePage, field, rowNamed, section } from '../support/console';
import { expect, test } from '../support/fixtures';

async function openOrder(page: Page, orderId: string): Promise<void> {
  await page.goto(`/console/orders/${encodeURIComponent(orderId)}`);
  await expectConsolePage(page, new RegExp(orderId));
}

async function expectActions(page: Page, allowed: string[]): Promise<void> {
  for (const name of ['Start', 'Complete', 'Cancel']) {
    const button = page.getByRole('button', { name, exact: true });
    if (allowed.includes(name)) await expect(button).toBeVisible();
    else await expect(button).toHaveCount(0);
  }
}

test('starting and completing an order from its page shows three linked events and its documents', async ({
  page,
  api,
  request,
  snap,
}) => {
  const order = await api.place('Kitchen cabinet, oak');
  await openOrder(page, order.orderId);
  await expect(field(page, 'Status')).toHaveText('received');
  await expectActions(page, ['Start', 'Cancel']);
  await snap('order-received');

  await page.getByRole('button', { name: 'Start', exact: true }).click();
  await expect(field(page, 'Status')).toHaveText('inprocess');
  await expectActions(page, ['Complete', 'Cancel']);

  await page.getByRole('button', { name: 'Complete', exact: true }).click();
  await expect(field(page, 'Status')).toHaveText('completed');
  await expectActions(page, []);
  expect((await api.order(order.orderId)).status).toBe('completed');

  const events = section(page, 'Events');
  const types = ['OrderPlaced', 'OrderStarted', 'OrderCompleted'];
  await expect(events.getByRole('row').filter({ hasText: /Order(Placed|Started|Completed)/ })).toHaveCount(3);
  for (const [i, type] of types.entries()) {
    const row = rowNamed(events, String(i + 1));
    await expect(row).toContainText(type);
    await expect(row).toContainText(/\blinked\b/);
  }
  await expect(events.getByText(/broken link/i)).toHaveCount(0);

  // The handlers write the documents after the events, asynchronously; the page shows
  // them as they arrive, without a reload.
  const documents = section(page, 'Documents');
  for (const name of [/acknowledgement\.json/, /invoice\.json/, /invoice\.pdf/]) {
    await expect(documents.getByRole('link', { name }).first()).toBeVisible({ timeout: 20_000 });
  }
  await snap('order-completed');

  const pdf = documents.getByRole('link', { name: /invoice\.pdf/ });
  const pdfResponse = await request.get((await pdf.getAttribute('href'))!);
  expect(pdfResponse.status()).toBe(200);
  expect(pdfResponse.headers()['content-type']).toBe('application/pdf');
  expect((await pdfResponse.body()).subarray(0, 5).toString('latin1')).toBe('%PDF-');

  await documents.getByRole('link', { name: /acknowledgement\.json/ }).click();
  // Formatted: one member per line, as `"key": value`.
  await expect(page.getByText(`"orderId": "${order.orderId}"`).first()).toBeVisible();
  await snap('document-json');
});

test('canceling without a reason shows an inline error and changes nothing; with a reason the order is canceled', async ({
  page,
  api,
  snap,
}) => {
  const order = await api.place('Bathroom tiles, blue');
  await openOrder(page, order.orderId);

  await page.getByRole('button', { name: 'Cancel', exact: true }).click();
  await expect(page.getByRole('alert')).toContainText(/reason/i);
  await expect(field(page, 'Status')).toHaveText('received');
  await snap('cancel-without-reason');
  const unchanged = await api.order(order.orderId);
  expect([unchanged.status, unchanged.version]).toEqual(['received', 1]);

  await page.getByLabel('Reason').fill('The customer found a cheaper supplier');
  await page.getByRole('button', { name: 'Cancel', exact: true }).click();
  await expect(field(page, 'Status')).toHaveText('canceled');
  await expectActions(page, []);
  await expect(page.getByText('The customer found a cheaper supplier').first()).toBeVisible();
  await snap('order-canceled');
  const canceled = await api.order(order.orderId);
  expect([canceled.status, canceled.version]).toEqual(['canceled', 2]);
});

test('a stale second tab gets "changed meanwhile" instead of overwriting the first tab\'s change', async ({
  page,
  context,
  api,
  snap,
}) => {
  const order = await api.place('Garden shed, 2 x 3 m');
  await openOrder(page, order.orderId);
  const second = await context.newPage();
  // Both tabs stream live; an order page does not replace its state or actions by itself
  // (only its documents), so the second keeps showing version 1: what If-Match is for.
  await openOrder(second, order.orderId);
  await expect(field(second, 'Status')).toHaveText('received');

  await page.getByRole('button', { name: 'Start', exact: true }).click();
  await expect(field(page, 'Status')).toHaveText('inprocess');
  // The second tab heard of the change (its documents refresh live) and still offers the
  // actions of the version it shows.
  await expect(second.getByText(/000002-work-started\.json/)).toBeVisible();
  await expect(field(second, 'Status')).toHaveText('received');

  await second.getByLabel('Reason').fill('Ordered twice');
  await second.getByRole('button', { name: 'Cancel', exact: true }).click();
  await expect(second.getByRole('alert')).toContainText(/changed meanwhile/i);
  await snap('stale-tab', second);
  const stored = await api.order(order.orderId);
  expect([stored.status, stored.version]).toEqual(['inprocess', 2]);
});

test('time slider: version 1 shows received', async ({ page, api, snap }) => {
  const order = await api.place('Front door, painted');
  await api.transition(order.orderId, 'start');
  await api.transition(order.orderId, 'complete');
  await openOrder(page, order.orderId);

  const timeTravel = section(page, 'Time travel');
  const slider = timeTravel.getByRole('slider', { name: 'Version' });
  await expect(slider).toHaveAttribute('min', '1');
  await expect(slider).toHaveAttribute('max', '3');

  await slider.fill('1');
  await expect(timeTravel).toContainText(/version 1\b\D*received/i);
  await snap('time-travel-version-1');
  await slider.fill('2');
  await expect(timeTravel).toContainText(/version 2\b\D*inprocess/i);
  // The current state is untouched by looking back.
  await expect(field(page, 'Status')).toHaveText('completed');
});

test('time field: the state at the moment the order was placed is received, and before it there was no order', async ({
  page,
  api,
  snap,
}) => {
  const order = await api.place('Garden gate, time travel by time');
  const placedAt = Date.parse(order.createdAt);
  // The field is to the second (UTC): wait for the clock to leave the second the order was
  // placed in, so that the later events fall after the time read back.
  const placedSecond = Math.floor(placedAt / 1000) * 1000;
  await expect.poll(() => Date.now(), { timeout: 3_000 }).toBeGreaterThan(placedSecond + 1_050);
  await api.transition(order.orderId, 'start');
  await api.transition(order.orderId, 'complete');
  await openOrder(page, order.orderId);

  const timeTravel = section(page, 'Time travel');
  const field = (t: number) => new Date(t).toISOString().slice(0, 19);
  await timeTravel.getByLabel('Time (UTC)').fill(field(placedSecond + 1_000));
  await expect(timeTravel).toContainText(/version 1, received/);
  await snap('time-travel-by-time');
  await timeTravel.getByLabel('Time (UTC)').fill(field(placedSecond - 60_000));
  await expect(timeTravel).toContainText(/did not exist yet/);
});

test('the order page works from the keyboard: Tab to "Start" and press Enter', async ({ page, api }) => {
  const order = await api.place('Window frames, keyboard only');
  await openOrder(page, order.orderId);
  const start = page.getByRole('button', { name: 'Start', exact: true });

  await expect(async () => {
    await page.keyboard.press('Tab');
    await expect(start).toBeFocused({ timeout: 100 });
  }).toPass({ timeout: 15_000, intervals: [0] });
  // Focus must be visible to someone who does not use a mouse.
  const focusRing = await start.evaluate((el) => {
    const style = getComputedStyle(el);
    return style.outlineStyle !== 'none' && style.outlineWidth !== '0px' ? 'outline' : style.boxShadow;
  });
  expect(focusRing, 'a visible focus indicator on the focused button').not.toBe('none');

  await page.keyboard.press('Enter');
  await expect(field(page, 'Status')).toHaveText('inprocess');
  expect((await api.order(order.orderId)).status).toBe('inprocess');
});
