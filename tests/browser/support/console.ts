import { expect, type Locator, type Page } from '@playwright/test';

/** The console's pages, as its navigation names them. */
export const NAV_LINKS = ['Overview', 'Orders', 'Dead letters', 'Audit'] as const;

/** Checks the page's heading and the navigation every console page carries. */
export async function expectConsolePage(page: Page, heading: string | RegExp): Promise<void> {
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(heading);
  const nav = page.getByRole('navigation', { name: 'Console' });
  for (const name of NAV_LINKS) {
    await expect(nav.getByRole('link', { name, exact: true })).toBeVisible();
  }
}

/**
 * The cell of `row` under the column header `column` of `table`, found by the header's
 * position, so a test reads a figure the way a person does (row, then column).
 */
export async function cell(table: Locator, row: Locator, column: string): Promise<Locator> {
  const headers = table.getByRole('row').first().getByRole('columnheader');
  const names = (await headers.allInnerTexts()).map((t) => t.trim());
  const index = names.indexOf(column);
  expect(index, `column "${column}" in ${JSON.stringify(names)}`).toBeGreaterThanOrEqual(0);
  return row.locator(':scope > th, :scope > td').nth(index);
}

/** The row of `table` whose first cell (a row header or a data cell) reads `name`. */
export function rowNamed(table: Locator, name: string): Locator {
  return table.getByRole('row', { name: new RegExp(`^\\s*${escape(name)}(\\s|$)`) });
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Marks the document, so a test can tell that what it saw changed in place: after a reload
 * or a navigation the mark is gone.
 */
export async function markDocument(page: Page): Promise<void> {
  await page.evaluate(() => {
    (window as unknown as { __notReloaded: boolean }).__notReloaded = true;
  });
}

export async function expectNotReloaded(page: Page): Promise<void> {
  const marked = await page.evaluate(() => (window as unknown as { __notReloaded?: boolean }).__notReloaded === true);
  expect(marked, 'the page updated in place, without a reload').toBe(true);
}

/** Fails if the page is wider than its viewport (content that scrolls sideways on a phone). */
export async function expectNoHorizontalOverflow(page: Page): Promise<void> {
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  expect(scrollWidth, `page width ${scrollWidth} px at a ${innerWidth} px viewport`).toBeLessThanOrEqual(innerWidth);
}

/** The value shown for `label` in the order's current state (a `<dt>`/`<dd>` pair). */
export function field(scope: Page | Locator, label: string): Locator {
  return scope.locator(`dt:text-is("${label}") + dd`).first();
}

/** The section of the page under the heading `name` (h2/h3 inside a section or region). */
export function section(page: Page, name: string): Locator {
  return page.locator('section, [role="region"]').filter({
    has: page.getByRole('heading', { name, exact: true }),
  }).last();
}
