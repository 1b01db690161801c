// What became of sent mail, in the webmail: the Sent list and the message
// page read it from the queue and the delivery log. A second real tern is
// the remote server for far.example; down.example goes to a closed port.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTern, launchChromium, signIn } from '../harness.mjs';

const PW = 'correct horse battery';
const ALICE = 'alice@example.test';
const SHOTS = join(import.meta.dirname, '..', 'screenshots');
let tern, remote, browser;

before(async () => {
  remote = await startTern();
  remote.cli(['domain', 'add', 'far.example']);
  remote.cli(['user', 'add', 'friend@far.example'], `${PW}\n`);
  tern = await startTern({
    TERN_RELAY__ENABLED: 'true',
    TERN_RELAY__ROUTES: `far.example=127.0.0.1:${remote.smtpPort}, down.example=127.0.0.1:1`,
    TERN_QUEUE__POLL_INTERVAL_MS: '200',
  });
  tern.cli(['domain', 'add', 'example.test']);
  tern.cli(['user', 'add', ALICE], `${PW}\n`);
  tern.cli(['user', 'add', 'bob@example.test'], `${PW}\n`);
  browser = await launchChromium();
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await tern?.stop();
  await remote?.stop();
});

for (const js of [true, false]) {
  test(`Sent shows each recipient: delivered, retrying with the reason, local (JavaScript ${js ? 'on' : 'off'})`, async () => {
    const ctx = await browser.newContext({ javaScriptEnabled: js, colorScheme: js ? 'light' : 'dark', timezoneId: 'UTC' });
    const page = await ctx.newPage();
    await signIn(page, tern.base, ALICE, PW);
    const subject = `Quarterly figures ${js ? 'A' : 'B'}`;
    await page.goto(`${tern.base}/compose`);
    await page.locator('#to').fill('friend@far.example, nobody@down.example, bob@example.test');
    await page.locator('#subject').fill(subject);
    await page.locator('#body').fill('The figures are attached in spirit.');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.waitForURL(/sent=1/);

    // The queue tries both outside recipients within a second or two.
    const open = async () => {
      await page.goto(`${tern.base}/mail?f=Sent`);
      const row = page.locator('li.msg', { has: page.locator('.subject', { hasText: subject }) });
      await row.waitFor();
      return row;
    };
    let summary = '';
    for (let i = 0; i < 50 && summary !== 'pending'; i++) {
      const row = await open();
      summary = await row.getByTestId('delivery-summary').innerText().catch(() => '');
      if (summary !== 'pending') await page.waitForTimeout(200);
    }
    assert.equal(summary, 'pending', 'one delivered, one still trying');
    let items = [];
    for (let i = 0; i < 50; i++) {
      const row = await open();
      await row.locator('a.open').click();
      await page.getByRole('heading', { name: subject }).waitFor();
      items = await page.getByTestId('delivery').locator('li').allInnerTexts();
      if (items.some((t) => t.includes('Delivered to 127.0.0.1')) && items.some((t) => t.includes('next attempt'))) break;
      await page.waitForTimeout(200);
    }
    const line = (who) => items.find((t) => t.includes(who)) ?? '';
    assert.match(line('friend@far.example'), /^delivered friend@far\.example: Delivered to 127\.0\.0\.1 at .* UTC: "250 2\.0\.0/);
    // The first message is tried; the second waits behind the
    // destination that did not answer, and says so.
    assert.match(line('nobody@down.example'), js
      ? /^pending nobody@down\.example: Not delivered yet: 1 attempt so far; the last answer was ".*4\.4\.1.*"; next attempt .* UTC$/
      : /^pending nobody@down\.example: Not delivered yet: the receiving server is not answering \(".*4\.4\.1.*"\); next attempt .* UTC$/);
    assert.match(line('bob@example.test'), /^delivered bob@example\.test: Delivered to a mailbox on this server$/);
    await page.screenshot({ path: join(SHOTS, `sent-delivery-${js ? 'light' : 'dark'}.png`) });
    await ctx.close();
  });
}
