import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { expectConsolePage, rowNamed, section } from '../support/console';
import { expect, test } from '../support/fixtures';

/**
 * Changes one letter of the description inside one stored event's envelope, directly in
 * `orders.db` (what an attacker with write access to the file could do). Python's sqlite3
 * module, since Node 20 has none; the service keeps running (WAL, busy timeout).
 */
function changeStoredDescription(dataDir: string, orderId: string, version: number): void {
  const script = `
import sqlite3, sys
db, order_id, version = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = sqlite3.connect(db, timeout=10)
(envelope,) = conn.execute(
    "SELECT envelope FROM events WHERE order_id = ? AND version = ?", (order_id, version)
).fetchone()
at = envelope.index('"description":"') + len('"description":"')
changed = envelope[:at] + ("Y" if envelope[at] == "X" else "X") + envelope[at + 1:]
with conn:
    rows = conn.execute(
        "UPDATE events SET envelope = ? WHERE order_id = ? AND version = ?",
        (changed, order_id, version),
    ).rowcount
assert rows == 1, rows
`;
  execFileSync('python3', ['-c', script, path.join(dataDir, 'orders.db'), orderId, String(version)], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}

test('an event changed in the store shows as a broken link on its order page and as a problem in the audit', async ({
  page,
  api,
  service,
  snap,
}) => {
  const order = await api.place('Tamper target: a steel beam');
  await api.transition(order.orderId, 'start');
  await api.transition(order.orderId, 'complete');
  changeStoredDescription(service.dataDir, order.orderId, 1);

  await page.goto(`/console/orders/${order.orderId}`);
  await expectConsolePage(page, new RegExp(order.orderId));
  const events = section(page, 'Events');
  await expect(rowNamed(events, '1')).toContainText(/broken link/i);
  await expect(rowNamed(events, '2')).toContainText(/\blinked\b/);
  await expect(rowNamed(events, '2')).not.toContainText(/broken/i);
  await expect(rowNamed(events, '3')).not.toContainText(/broken/i);
  await snap('order-broken-link');

  await page.goto('/console/audit');
  await expectConsolePage(page, 'Audit');
  await page.getByLabel('Order id').fill(order.orderId);
  await page.getByRole('button', { name: 'Verify order', exact: true }).click();
  const result = page.getByRole('status');
  await expect(result).toContainText(/problem/);
  await expect(result).not.toContainText(/\bOK\b/);
  // One problem a line: the changed event's hash first (the states stored after it
  // disagree with the changed description too, and are listed as well).
  const hashProblem = result.getByRole('listitem').filter({ hasText: /version 1: hash/ });
  await expect(hashProblem).toHaveCount(1);
  await expect(hashProblem).toContainText(order.orderId);
  await expect(hashProblem).toContainText(/changed/);
  await snap('audit-problem');
});
