// Identities and signatures: a user sets a name and a signature for their
// own address and for an alias that delivers to them; a new message starts
// with their own signature; a reply goes out as the address the message
// was sent to, with that address's name and signature, and arrives so.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTern, launchChromium, smtpSend, signIn } from '../harness.mjs';

const PW = 'correct horse battery';
const ALICE = 'alice@example.test';
const BOB = 'bob@example.test';
const SHOTS = join(import.meta.dirname, '..', 'screenshots');
let tern, browser;

before(async () => {
  tern = await startTern();
  tern.cli(['domain', 'add', 'example.test']);
  tern.cli(['user', 'add', ALICE], `${PW}\n`);
  tern.cli(['user', 'add', BOB], `${PW}\n`);
  tern.cli(['alias', 'add', 'sales@example.test', ALICE]);
  browser = await launchChromium();
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await tern?.stop();
});

async function session(who, js = true) {
  const ctx = await browser.newContext({ javaScriptEnabled: js });
  const page = await ctx.newPage();
  await signIn(page, tern.base, who, PW);
  return { ctx, page };
}

test('names and signatures are set per address in Settings', async () => {
  const { ctx, page } = await session(ALICE);
  await page.getByTestId('settings-link').click();
  await page.waitForURL(/\/settings$/);
  const sections = page.getByTestId('identity');
  await sections.nth(1).waitFor();
  assert.deepEqual(await sections.locator('h3').allInnerTexts(), [ALICE, 'sales@example.test']);
  for (const [i, name, sig] of [[0, 'Alice Liddell', 'Alice\nExample Ltd'], [1, 'Example Sales', 'The sales team']]) {
    const s = sections.nth(i);
    await s.locator('input[name=name]').fill(name);
    await s.locator('textarea[name=signature]').fill(sig);
    await s.getByRole('button', { name: 'Save' }).click();
    await page.getByTestId('ok').waitFor();
  }
  await page.reload();
  assert.equal(await sections.nth(1).locator('input[name=name]').inputValue(), 'Example Sales');
  await page.screenshot({ path: join(SHOTS, 'settings-light.png') });
  await page.goto(`${tern.base}/compose`);
  assert.equal(await page.locator('#from').inputValue(), ALICE);
  // (An HTML parser drops a textarea's first newline; a page built in the
  // browser keeps it.)
  assert.match(await page.locator('#body').inputValue(), /^\n?\n-- \nAlice\nExample Ltd$/);
  // Another From brings its signature; one the user edited stays.
  await page.locator('#from').selectOption('sales@example.test');
  assert.match(await page.locator('#body').inputValue(), /^\n?\n-- \nThe sales team$/);
  await page.locator('#body').fill('Hello,\n\n-- \nThe sales team');
  await page.locator('#from').selectOption(ALICE);
  assert.equal(await page.locator('#body').inputValue(), 'Hello,\n\n-- \nAlice\nExample Ltd');
  await page.locator('#body').fill('Hello,\n\nAlice by hand');
  await page.locator('#from').selectOption('sales@example.test');
  assert.equal(await page.locator('#body').inputValue(), 'Hello,\n\nAlice by hand');
  await ctx.close();
});

for (const js of [true, false]) {
  test(`a reply goes out as the address it was sent to, with its signature (JavaScript ${js ? 'on' : 'off'})`, async () => {
    const subject = `Price list ${js}`;
    await smtpSend(tern.smtpPort, BOB, ['sales@example.test'],
      `From: Bob <${BOB}>\nTo: sales@example.test\nSubject: ${subject}\n\nCould you send the price list?\n`);
    const { ctx, page } = await session(ALICE, js);
    await page.goto(`${tern.base}/mail?f=INBOX`);
    await page.locator('li.msg', { has: page.locator('.subject', { hasText: subject }) }).locator('a.open').click();
    await page.getByRole('heading', { name: subject }).waitFor();
    await page.getByRole('link', { name: 'Reply', exact: true }).click();
    await page.waitForURL(/\/compose\?mode=reply/);
    assert.equal(await page.locator('#from').inputValue(), 'sales@example.test');
    assert.match(await page.locator('#body').inputValue(), /^\n?\n-- \nThe sales team\n\nOn .* wrote:\n> Could you send the price list\?/);
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await page.waitForURL(/sent=1/);
    await ctx.close();

    const bob = await session(BOB, js);
    await bob.page.goto(`${tern.base}/mail?f=INBOX`);
    const row = bob.page.locator('li.msg', { has: bob.page.locator('.subject', { hasText: `Re: ${subject}` }) });
    await row.waitFor();
    assert.equal(await row.locator('.from').innerText(), 'Example Sales <sales@example.test>');
    await bob.ctx.close();
  });
}

test('times follow the browser\'s time zone, or the one chosen in Settings', async () => {
  await smtpSend(tern.smtpPort, BOB, [ALICE],
    `From: Bob <${BOB}>\nTo: ${ALICE}\nSubject: Zoned\nDate: Sun, 6 Dec 2026 16:20:00 +0000\n\nWhat time is it?\n`);
  // JavaScript on, in New York (UTC-05:00 in December): the page tells the
  // server, and the next page shows New York time.
  const ny = await browser.newContext({ timezoneId: 'America/New_York' });
  let page = await ny.newPage();
  await signIn(page, tern.base, ALICE, PW);
  await page.goto(`${tern.base}/mail?f=INBOX`);
  await page.waitForFunction(() => document.cookie.includes('tz=-300'));
  await page.goto(`${tern.base}/mail?f=INBOX`);
  const row = page.locator('li.msg', { has: page.locator('.subject', { hasText: 'Zoned' }) });
  assert.equal(await row.locator('.date').innerText(), '2026-12-06 11:20');
  await row.locator('a.open').click();
  await page.getByRole('heading', { name: 'Zoned' }).waitFor();
  assert.match(await page.locator('dl.headers').innerText(), /2026-12-06 11:20 UTC-05:00/);
  await ny.close();

  // JavaScript off: UTC, until a zone is chosen in Settings.
  const off = await browser.newContext({ javaScriptEnabled: false });
  page = await off.newPage();
  await signIn(page, tern.base, ALICE, PW);
  await page.goto(`${tern.base}/mail?f=INBOX`);
  const plain = page.locator('li.msg', { has: page.locator('.subject', { hasText: 'Zoned' }) });
  assert.equal(await plain.locator('.date').innerText(), '2026-12-06 16:20');
  await page.goto(`${tern.base}/settings`);
  await page.locator('#zone').selectOption('60');
  await page.getByRole('button', { name: 'Save' }).first().click();
  await page.getByTestId('ok').waitFor();
  await page.goto(`${tern.base}/mail?f=INBOX`);
  assert.equal(await plain.locator('.date').innerText(), '2026-12-06 17:20');
  await off.close();
});
