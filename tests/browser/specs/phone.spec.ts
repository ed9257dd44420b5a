import { expectConsolePage, expectNoHorizontalOverflow } from '../support/console';
import { expect, FAIL_MARKER, test } from '../support/fixtures';

// Runs in the "phone" project (390 px wide): every read-only page fits the screen.
test('every console page fits a phone-width screen without sideways scrolling', async ({ page, api, snap }) => {
  const order = await api.place('Phone check: a long description that has to wrap on a narrow screen instead of widening it');
  await api.transition(order.orderId, 'start');
  await api.place(`${FAIL_MARKER}: dead-lettered for the phone check`);

  const pages: [string, string | RegExp, string][] = [
    ['/', 'Overview', 'phone-overview'],
    ['/console/orders', 'Orders', 'phone-orders'],
    [`/console/orders/${order.orderId}`, new RegExp(order.orderId), 'phone-order'],
    ['/console/dead-letters', 'Dead letters', 'phone-dead-letters'],
    ['/console/audit', 'Audit', 'phone-audit'],
  ];
  for (const [path, heading, shot] of pages) {
    await page.goto(path);
    await expectConsolePage(page, heading);
    await expectNoHorizontalOverflow(page);
    await snap(shot);
  }
  await expect(page.getByRole('button', { name: 'Verify all', exact: true })).toBeInViewport();
});
