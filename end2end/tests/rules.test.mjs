// Rules: a user builds rules, a vacation reply and forwarding in the
// webmail's form, with JavaScript on and off; they run when mail arrives
// over SMTP (checked over IMAP, an independent client), survive a restart
// of `tern serve`, show as Sieve, and a hand-written script with an error
// is refused with the line it is on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { startTern, launchChromium, smtpSend, signIn, imap } from '../harness.mjs';

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
  browser = await launchChromium();
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await tern?.stop();
});

async function session(who, js = true, scheme = 'light') {
  const ctx = await browser.newContext({ javaScriptEnabled: js, colorScheme: scheme });
  const page = await ctx.newPage();
  await signIn(page, tern.base, who, PW);
  return { ctx, page };
}

async function until(what, cond, ms = 20000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const subjects = (who, folder) => imap(tern.imapsPort, who, PW, folder).subjects;

async function openRules(page) {
  await page.getByTestId('rules-link').click();
  await page.waitForURL(/\/rules/);
  await page.getByRole('heading', { name: 'Rules', exact: true }).waitFor();
}

for (const js of [true, false]) {
  test(`rules built in the form run on arriving mail and survive a restart (JavaScript ${js ? 'on' : 'off'})`, async () => {
    const tag = js ? 'on' : 'off';
    let { ctx, page } = await session(BOB, js, js ? 'light' : 'dark');
    await openRules(page);
    // Start from nothing (the other run left its rules).
    await page.locator('#sieve').fill('');
    await page.getByRole('button', { name: 'Save script' }).click();
    await page.getByTestId('ok').waitFor();
    assert.equal(await page.getByTestId('rules-state').innerText(), 'No rules run.');
    assert.equal(await page.getByTestId('rule').count(), 0);

    await page.locator('#rule-field').selectOption('subject');
    await page.locator('#rule-op').selectOption('contains');
    await page.locator('#rule-value').fill('report');
    await page.locator('#rule-action').selectOption('move');
    await page.locator('#rule-arg').fill('Archive');
    await page.getByRole('button', { name: 'Add rule' }).click();
    await page.getByTestId('ok').waitFor();
    await page.getByTestId('rule').first().waitFor();
    await page.locator('#rule-field').selectOption('from');
    await page.locator('#rule-op').selectOption('is');
    await page.locator('#rule-value').fill(ALICE);
    await page.locator('#rule-action').selectOption('label');
    await page.locator('#rule-arg').fill('$Label1');
    await page.getByRole('button', { name: 'Add rule' }).click();
    await page.getByTestId('rule').nth(1).waitFor();
    assert.deepEqual(await page.getByTestId('rule').locator('span').allInnerTexts(), [
      'If the subject contains “report”, move it to Archive',
      `If the sender is “${ALICE}”, label it $Label1`,
    ]);
    await page.locator('input[name=on]').check();
    await page.locator('#vac-subject').fill(`Away ${tag}`);
    await page.locator('#vac-body').fill(`On holiday until Monday (${tag}).`);
    await page.getByRole('button', { name: 'Save vacation reply' }).click();
    // (With JavaScript the page stays and its data reloads: wait for it.)
    await page.waitForFunction(() => document.querySelector('#sieve')?.value.includes('vacation'));
    assert.equal(await page.getByTestId('rules-state').innerText(), 'Your rules are on.');
    assert.match(await page.getByTestId('sieve').inputValue(), /vacation :days 7 :subject "Away[\s\S]*fileinto "Archive";/);
    await page.screenshot({ path: join(SHOTS, `rules-${js ? 'light' : 'dark'}.png`), fullPage: true });
    await ctx.close();

    await tern.restart();
    const report = `Weekly report ${tag}`;
    const lunch = `Lunch ${tag}`;
    for (const s of [report, lunch, `${lunch} again`]) {
      await smtpSend(tern.smtpPort, ALICE, [BOB], `From: Alice <${ALICE}>\nTo: ${BOB}\nSubject: ${s}\n\nHello.\n`);
    }
    await until('the report in Archive', () => subjects(BOB, 'Archive').includes(report));
    assert.ok(!subjects(BOB, 'INBOX').includes(report));
    const inbox = imap(tern.imapsPort, BOB, PW, 'INBOX');
    const i = inbox.subjects.indexOf(lunch);
    assert.ok(i >= 0, JSON.stringify(inbox.subjects));
    assert.ok(inbox.flags[i].includes('$Label1'), JSON.stringify(inbox.flags[i]));
    // One vacation reply for three messages, read in the webmail.
    await until('the vacation reply', () => subjects(ALICE, 'INBOX').includes(`Away ${tag}`));
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(subjects(ALICE, 'INBOX').filter((s) => s === `Away ${tag}`).length, 1);
    ({ ctx, page } = await session(ALICE, js));
    await page.goto(`${tern.base}/mail?f=INBOX`);
    await page.locator('li.msg', { has: page.locator('.subject', { hasText: `Away ${tag}` }) }).waitFor();
    await ctx.close();
  });
}

test('the raw Sieve view refuses a broken script by its line and takes a hand-written one', async () => {
  const { ctx, page } = await session(BOB);
  await openRules(page);
  await page.locator('#sieve').fill('require "fileinto";\nfileinto "Archive"\n');
  await page.getByRole('button', { name: 'Save script' }).click();
  await page.getByTestId('error').waitFor();
  assert.match(await page.getByTestId('error').innerText(), /The script has an error: line \d+, column \d+/);
  await page.locator('#sieve').fill('require ["fileinto"];\nif header :contains "subject" "invoice" { fileinto "Archive"; }\n');
  await page.getByRole('button', { name: 'Save script' }).click();
  await page.getByTestId('ok').waitFor();
  await page.getByTestId('hand-written').waitFor();
  assert.equal(await page.getByTestId('rule').count(), 0);
  await smtpSend(tern.smtpPort, ALICE, [BOB], `From: ${ALICE}\nTo: ${BOB}\nSubject: Invoice 12\n\nPay.\n`);
  await until('the invoice in Archive', () => subjects(BOB, 'Archive').includes('Invoice 12'));
  await page.getByRole('button', { name: 'Start over with the form' }).click();
  // (The "Saved." of the save before is still on the page: wait for the
  // note itself to go.)
  await page.getByTestId('hand-written').waitFor({ state: 'detached' });
  assert.equal(await page.getByTestId('rules-state').innerText(), 'No rules run.');
  await ctx.close();
});

// "Mail held for you" lives on every page: mail accepted while the store
// refuses writes (a trigger stands in for the outage) is announced with
// its count and time, and the note goes once the mail is stored.
function sql(statement) {
  const r = spawnSync('python3', ['-c', `import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=30)
c.execute(sys.argv[2])
c.commit()`, join(tern.dir, 'tern.db'), statement], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
}

for (const js of [true, false]) {
  test(`the webmail says how much mail is held for you (JavaScript ${js ? 'on' : 'off'})`, async () => {
    const { ctx, page } = await session(ALICE, js, js ? 'light' : 'dark');
    sql("CREATE TRIGGER hold BEFORE INSERT ON blobs BEGIN SELECT RAISE(ABORT, 'held'); END");
    try {
      for (const i of [1, 2, 3]) {
        await smtpSend(tern.smtpPort, BOB, [ALICE], `From: ${BOB}\nTo: ${ALICE}\nSubject: Held ${js} ${i}\n\nWaiting.\n`);
      }
      await page.goto(`${tern.base}/mail?f=INBOX`);
      assert.match(await page.getByTestId('held').innerText(), /^3 messages for you arrived since .* and are being stored; they will appear here shortly\. Nothing is lost\.$/);
      await page.screenshot({ path: join(SHOTS, `held-${js ? 'light' : 'dark'}.png`) });
    } finally {
      sql('DROP TRIGGER hold');
    }
    await until('the held mail', () => subjects(ALICE, 'INBOX').includes(`Held ${js} 3`), 60000);
    await page.goto(`${tern.base}/mail?f=INBOX`);
    await page.locator('li.msg', { has: page.locator('.subject', { hasText: `Held ${js} 3` }) }).waitFor();
    assert.equal(await page.getByTestId('held').count(), 0);
    await ctx.close();
  });
}
