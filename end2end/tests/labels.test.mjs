// Labels are IMAP keywords: set from the list (on the selected messages)
// and from the message page, taken off with their ×, and seen by IMAP as
// $Label1..$Label5. With JavaScript on and off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTern, launchChromium, smtpSend, imap, signIn } from '../harness.mjs';

const PW = 'correct horse battery';
const ALICE = 'alice@example.test';
let tern, browser;

before(async () => {
  tern = await startTern();
  tern.cli(['domain', 'add', 'example.test']);
  tern.cli(['user', 'add', ALICE], `${PW}\n`);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tern?.stop();
});

const flagsOf = (subject) => {
  const box = imap(tern.imapsPort, ALICE, PW, 'INBOX');
  return box.flags[box.subjects.indexOf(subject)];
};

for (const js of [true, false]) {
  test(`labels from the list and the message page reach IMAP (JavaScript ${js ? 'on' : 'off'})`, async () => {
    const subject = `Quarterly plan ${js}`;
    await smtpSend(tern.smtpPort, 'boss@far.example', [ALICE],
      `From: boss@far.example\nTo: ${ALICE}\nSubject: ${subject}\n\nThe plan.\n`);
    const ctx = await browser.newContext({ javaScriptEnabled: js });
    const page = await ctx.newPage();
    await signIn(page, tern.base, ALICE, PW);
    await page.goto(`${tern.base}/mail?f=INBOX`);
    const row = page.locator('li.msg', { has: page.locator('.subject', { hasText: subject }) });
    await row.locator('input[type=checkbox]').check();
    await page.locator('select[name=label]').first().selectOption('Work');
    await page.getByRole('button', { name: 'Label', exact: true }).click();
    await row.locator('.label', { hasText: 'Work' }).waitFor();
    assert.ok(flagsOf(subject).includes('$label2'), JSON.stringify(flagsOf(subject)));

    await row.locator('a.open').click();
    await page.getByRole('heading', { name: subject }).waitFor();
    await page.locator('.actions select[name=label]').selectOption('Important');
    await page.getByRole('button', { name: 'Add label' }).click();
    await page.locator('div.labels .label', { hasText: 'Important' }).waitFor();
    assert.ok(flagsOf(subject).includes('$label1'));
    await page.getByRole('button', { name: 'Remove the label Work' }).click();
    await page.waitForFunction(() => !document.querySelector('button[aria-label="Remove the label Work"]'));
    const flags = flagsOf(subject);
    assert.ok(flags.includes('$label1') && !flags.includes('$label2'), JSON.stringify(flags));
    await ctx.close();
  });
}
