// Undo send and send later, kept on the server: the undo window
// (web.undo_send_secs) gives the message back to the compose form with its
// attachment; a scheduled message survives a restart of `tern serve`, is
// listed, can be sent now or cancelled; snooze moves a message to Snoozed
// until a time (its return is tested over IMAP in server/tests/imap.rs).
// With JavaScript on and off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTern, launchChromium, imap, signIn, smtpSend } from '../harness.mjs';

const PW = 'correct horse battery';
const ALICE = 'alice@example.test';
const BOB = 'bob@example.test';
const SHOTS = join(import.meta.dirname, '..', 'screenshots');
let tern, browser;

before(async () => {
  tern = await startTern({ TERN_WEB__UNDO_SEND_SECS: '8' });
  tern.cli(['domain', 'add', 'example.test']);
  tern.cli(['user', 'add', ALICE], `${PW}\n`);
  tern.cli(['user', 'add', BOB], `${PW}\n`);
  browser = await launchChromium();
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await tern?.stop();
});

async function session(js, scheme = 'light') {
  const ctx = await browser.newContext({ javaScriptEnabled: js, colorScheme: scheme, timezoneId: 'UTC' });
  const page = await ctx.newPage();
  await signIn(page, tern.base, ALICE, PW);
  return { ctx, page };
}

async function compose(page, subject, { file } = {}) {
  await page.goto(`${tern.base}/compose`);
  await page.locator('#to').fill(BOB);
  await page.locator('#subject').fill(subject);
  await page.locator('#body').fill(`About ${subject}.`);
  if (file) await page.locator('#attachment').setInputFiles(file);
}

const bobHas = (subject) => imap(tern.imapsPort, BOB, PW, 'INBOX').subjects.includes(subject);

async function until(what, cond, ms = 20000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

for (const js of [true, false]) {
  test(`undo gives the message back to the compose form, attachment and all (JavaScript ${js ? 'on' : 'off'})`, async () => {
    const { ctx, page } = await session(js);
    const subject = `Draft figures ${js ? 'A' : 'B'}`;
    await compose(page, subject, {
      file: { name: 'figures.csv', mimeType: 'text/csv', buffer: Buffer.from('q1,q2\n1,2\n') },
    });
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await page.waitForURL(/sent=1&undo=\d+/);
    await page.getByTestId('sent-note').waitFor();
    if (js) await page.screenshot({ path: join(SHOTS, 'sent-undo-light.png') });
    await page.getByTestId('undo').click();
    await page.waitForURL(/\/compose\?draft=\d+&undone=1/);
    await page.getByTestId('undone').waitFor();
    assert.equal(await page.locator('#subject').inputValue(), subject);
    assert.equal(await page.locator('#to').inputValue(), BOB);
    assert.match(await page.locator('#body').inputValue(), new RegExp(`About ${subject}\\.`));
    assert.match(await page.locator('.notice', { hasText: 'Attachments included' }).innerText(), /figures\.csv/);
    // Well past the window: it was never sent.
    await new Promise((r) => setTimeout(r, 9000));
    assert.ok(!bobHas(subject), 'bob never got the undone message');
    assert.ok(!imap(tern.imapsPort, ALICE, PW, 'Sent').subjects.includes(subject));
    await ctx.close();
  });
}

test('without undo, the message goes when the window closes', async () => {
  const { ctx, page } = await session(true);
  const subject = 'Goes after the window';
  await compose(page, subject);
  const sentAt = Date.now();
  await page.getByRole('button', { name: 'Send', exact: true }).click();
  await page.waitForURL(/sent=1&undo=\d+/);
  assert.ok(!bobHas(subject), 'held during the window');
  await until('delivery', () => bobHas(subject));
  assert.ok(Date.now() - sentAt >= 7000, 'not before the window closed');
  assert.ok(imap(tern.imapsPort, ALICE, PW, 'Sent').subjects.includes(subject));
  // Too late to undo now.
  await page.getByTestId('undo').click();
  await page.getByTestId('too-late').waitFor();
  await ctx.close();
});

for (const js of [true, false]) {
  test(`send later survives a restart, is listed, sent now or cancelled (JavaScript ${js ? 'on' : 'off'})`, async () => {
    let { ctx, page } = await session(js, js ? 'light' : 'dark');
    const soon = new Date(Date.now() + 3 * 3600 * 1000).toISOString().slice(0, 16);
    const subjects = [`Later one ${js}`, `Later two ${js}`];
    for (const subject of subjects) {
      await compose(page, subject);
      await page.locator('details.later summary').click();
      await page.locator('#send_at').fill(soon);
      await page.getByTestId('send-later').click();
      await page.waitForURL(/\/scheduled$/);
    }
    await ctx.close();
    await tern.restart();
    ({ ctx, page } = await session(js, js ? 'light' : 'dark'));
    await page.getByTestId('scheduled-link').click();
    await page.waitForURL(/\/scheduled$/);
    const rows = page.getByTestId('scheduled').locator('tbody tr');
    const row = (s) => rows.filter({ hasText: s });
    await row(subjects[0]).waitFor();
    assert.match(await row(subjects[0]).innerText(), new RegExp(`${BOB}.*${soon.replace('T', ' ')}.*send later`, 's'));
    await page.screenshot({ path: join(SHOTS, `scheduled-${js ? 'light' : 'dark'}.png`) });
    assert.ok(!bobHas(subjects[0]));

    await row(subjects[0]).getByRole('button', { name: 'Send now' }).click();
    await page.getByTestId('ok').getByText('Sending now.').waitFor();
    await until('the send', () => bobHas(subjects[0]));

    await page.goto(`${tern.base}/scheduled`);
    await row(subjects[1]).getByRole('button', { name: 'Cancel' }).click();
    await page.getByTestId('ok').getByText('Cancelled: the message is in Drafts.').waitFor();
    assert.equal(await rows.filter({ hasText: `${js}` }).count(), 0);
    assert.ok(imap(tern.imapsPort, ALICE, PW, 'Drafts').subjects.includes(subjects[1]));
    assert.ok(!bobHas(subjects[1]));
    await ctx.close();
  });
}

for (const js of [true, false]) {
  test(`snooze takes a message out of the inbox until a chosen time (JavaScript ${js ? 'on' : 'off'})`, async () => {
    const subject = `Renew the lease ${js}`;
    await smtpSend(tern.smtpPort, 'landlord@far.example', [ALICE],
      `From: landlord@far.example\nTo: ${ALICE}\nSubject: ${subject}\n\nPlease renew by Friday.\n`);
    const { ctx, page } = await session(js, js ? 'light' : 'dark');
    await page.goto(`${tern.base}/mail?f=INBOX`);
    await page.locator('li.msg', { has: page.locator('.subject', { hasText: subject }) }).locator('a.open').click();
    await page.getByRole('heading', { name: subject }).waitFor();
    await page.getByTestId('snooze').click();
    await page.getByRole('button', { name: 'Tomorrow 08:00 UTC' }).click();
    await page.getByTestId('snoozed-note').waitFor();
    assert.match(await page.getByTestId('snoozed-note').innerText(), /^Snoozed until \d{4}-\d\d-\d\d 08:00 UTC\./);
    assert.equal(await page.locator('li.msg .subject', { hasText: subject }).count(), 0, 'gone from the inbox');
    assert.ok(!imap(tern.imapsPort, ALICE, PW, 'INBOX').subjects.includes(subject));
    assert.ok(imap(tern.imapsPort, ALICE, PW, 'Snoozed').subjects.includes(subject));
    await page.goto(`${tern.base}/mail?f=Snoozed`);
    const row = page.locator('li.msg', { has: page.locator('.subject', { hasText: subject }) });
    assert.match(await row.getByTestId('snoozed-until').innerText(), /^until \d{4}-\d\d-\d\d 08:00 UTC$/);
    await page.screenshot({ path: join(SHOTS, `snoozed-${js ? 'light' : 'dark'}.png`) });
    await ctx.close();
  });
}
