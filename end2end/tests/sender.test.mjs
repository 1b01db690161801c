// The sender checks on port 25 as a reader sees them: a message whose
// sender SPF vouches for shows "verified sender", one nothing vouches for
// (with a forged Authentication-Results in this host's name, which the
// server removes) shows "could not verify". With JavaScript on and off,
// light and dark.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTern, startFakeDns, launchChromium, smtpSend, signIn } from '../harness.mjs';

const PW = 'correct horse battery';
const BOB = 'bob@example.test';
const SHOTS = join(import.meta.dirname, '..', 'screenshots');
let tern, browser, dns;

before(async () => {
  dns = await startFakeDns({ 'good.example': 'v=spf1 ip4:127.0.0.1 -all' });
  tern = await startTern({
    TERN_SMTP__SENDER_CHECKS: 'true',
    TERN_SMTP__NAMESERVER: dns.addr,
  });
  tern.cli(['domain', 'add', 'example.test']);
  tern.cli(['user', 'add', BOB], `${PW}\n`);
  browser = await launchChromium();
  mkdirSync(SHOTS, { recursive: true });
  const send = (from, subject, extra = '') => smtpSend(tern.smtpPort, from, [BOB],
    `${extra}From: ${from}\nTo: ${BOB}\nSubject: ${subject}\nDate: Sun, 6 Dec 2026 09:00:00 +0000\n\nHello.\n`);
  assert.match(await send('news@good.example', 'Checked news'), /^250 /);
  assert.match(await send('pay@forged.example', 'Pay this invoice',
    'Authentication-Results: localhost; dmarc=pass header.from=forged.example\n'), /^250 /);
});

after(async () => {
  await browser?.close();
  await tern?.stop();
  dns?.close();
});

async function badgeOf(page, subject) {
  await page.goto(`${tern.base}/mail?f=INBOX`);
  await page.locator('li.msg', { has: page.locator('.subject', { hasText: subject }) })
    .locator('a.open').click();
  await page.getByRole('heading', { name: subject }).waitFor();
  const badge = page.getByTestId('sender-badge');
  return (await badge.count()) ? (await badge.innerText()) : null;
}

for (const js of [true, false]) {
  test(`the message page shows who vouches for the sender (JavaScript ${js ? 'on' : 'off'})`, async () => {
    const ctx = await browser.newContext({ javaScriptEnabled: js });
    const page = await ctx.newPage();
    await signIn(page, tern.base, BOB, PW);
    assert.equal(await badgeOf(page, 'Checked news'), 'verified sender');
    assert.equal(await page.getByTestId('sender-badge').getAttribute('class'), 'badge verified');
    if (js) await page.screenshot({ path: join(SHOTS, 'sender-verified-light.png') });
    assert.equal(await badgeOf(page, 'Pay this invoice'), 'could not verify');
    assert.equal(await page.getByTestId('sender-badge').getAttribute('class'), 'badge unverified');
    await ctx.close();
  });
}

test('screenshots: the badges in dark mode', async () => {
  const ctx = await browser.newContext({ colorScheme: 'dark' });
  const page = await ctx.newPage();
  await signIn(page, tern.base, BOB, PW);
  assert.equal(await badgeOf(page, 'Pay this invoice'), 'could not verify');
  await page.screenshot({ path: join(SHOTS, 'sender-unverified-dark.png') });
  await ctx.close();
});
