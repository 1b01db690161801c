// A folder out and in as mbox from the webmail: Export downloads INBOX as
// an mbox file; Import puts it into another folder, and a second import of
// the same file adds nothing. With JavaScript on and off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { startTern, launchChromium, smtpSend, imap, signIn } from '../harness.mjs';

const PW = 'correct horse battery';
const ALICE = 'alice@example.test';
let tern, browser;

before(async () => {
  tern = await startTern();
  tern.cli(['domain', 'add', 'example.test']);
  tern.cli(['user', 'add', ALICE], `${PW}\n`);
  for (const i of [1, 2]) {
    await smtpSend(tern.smtpPort, 'carol@far.example', [ALICE],
      `From: carol@far.example\nTo: ${ALICE}\nSubject: Exported ${i}\nMessage-ID: <exp${i}@far.example>\n\nFrom the archive, number ${i}.\n`);
  }
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tern?.stop();
});

for (const js of [true, false]) {
  test(`export a folder as mbox and import it into another (JavaScript ${js ? 'on' : 'off'})`, async () => {
    const ctx = await browser.newContext({ javaScriptEnabled: js, acceptDownloads: true });
    const page = await ctx.newPage();
    await signIn(page, tern.base, ALICE, PW);
    await page.goto(`${tern.base}/folders`);
    const inbox = page.locator('ul.folderlist li', { hasText: 'Inbox' });
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      inbox.getByTestId('export').click(),
    ]);
    assert.equal(download.suggestedFilename(), 'INBOX.mbox');
    const path = await download.path();
    const text = readFileSync(path, 'utf8');
    assert.match(text, /^From - /);
    assert.match(text, /Subject: Exported 1\n[\s\S]*\n>From the archive, number 1\.\n/);
    assert.match(text, /Subject: Exported 2\n/);

    const target = js ? 'Archive' : 'Trash';
    for (const [added, skipped] of [[2, 0], [0, 2]]) {
      await page.goto(`${tern.base}/folders`);
      await page.locator('#import-into').selectOption(target);
      await page.locator('#import-file').setInputFiles(path);
      await page.getByTestId('import').getByRole('button', { name: 'Import' }).click();
      await page.getByTestId('imported').waitFor();
      assert.equal(await page.getByTestId('imported').innerText(),
        `Imported ${added} message(s) into ${target}; ${skipped} already there.`);
    }
    assert.deepEqual(imap(tern.imapsPort, ALICE, PW, target).subjects.sort(), ['Exported 1', 'Exported 2']);
    await ctx.close();
  });
}

// Maildir as a zip: one folder, and the whole account (Maildir++), each
// read back by Python's zipfile and mailbox modules.
function maildirSubjects(zipPath, folder) {
  const r = spawnSync('python3', ['-c', `import mailbox, sys, tempfile, zipfile
z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None
d = tempfile.mkdtemp(); z.extractall(d)
md = mailbox.Maildir(d, create=False)
if sys.argv[2]: md = md.get_folder(sys.argv[2])
print("\\n".join(sorted(m["Subject"] for m in md)))`, zipPath, folder], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout.trim().split('\n');
}

for (const js of [true, false]) {
  test(`export a folder and all mail as Maildir zips (JavaScript ${js ? 'on' : 'off'})`, async () => {
    const ctx = await browser.newContext({ javaScriptEnabled: js, acceptDownloads: true });
    const page = await ctx.newPage();
    await signIn(page, tern.base, ALICE, PW);
    await page.goto(`${tern.base}/folders`);
    const inbox = page.locator('ul.folderlist li', { hasText: 'Inbox' });
    const [one] = await Promise.all([page.waitForEvent('download'), inbox.getByTestId('export-maildir').click()]);
    assert.equal(one.suggestedFilename(), 'INBOX.maildir.zip');
    assert.deepEqual(maildirSubjects(await one.path(), ''), ['Exported 1', 'Exported 2']);
    const [all] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-all').click()]);
    assert.equal(all.suggestedFilename(), 'mail.maildir.zip');
    const p = await all.path();
    assert.deepEqual(maildirSubjects(p, ''), ['Exported 1', 'Exported 2']);
    // The mbox test imported them into Archive as well.
    assert.deepEqual(maildirSubjects(p, 'Archive'), ['Exported 1', 'Exported 2']);
    await ctx.close();
  });
}

test('a long import shows its progress and then what it did', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'mbox-')), 'bulk.mbox');
  let text = '';
  for (let i = 1; i <= 1500; i++) {
    text += `From - Sun Dec  6 10:00:00 2026\nFrom: list@far.example\nSubject: Bulk ${i}\nMessage-ID: <bulk${i}@far.example>\n\nNumber ${i}.\n\n`;
  }
  writeFileSync(file, text);
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await signIn(page, tern.base, ALICE, PW);
  await page.goto(`${tern.base}/folders`);
  await page.locator('#import-into').selectOption('Junk');
  await page.locator('#import-file').setInputFiles(file);
  await page.getByTestId('import').getByRole('button', { name: 'Import' }).click();
  await page.getByTestId('importing').waitFor();
  assert.match(await page.getByTestId('importing').innerText(), /^Importing into Junk: \d+ of 1500 messages…$/);
  await page.getByTestId('imported').waitFor({ timeout: 120000 });
  assert.equal(await page.getByTestId('imported').innerText(), 'Imported 1500 message(s) into Junk; 0 already there.');
  assert.equal(imap(tern.imapsPort, ALICE, PW, 'Junk').subjects.length, 1500);
  await ctx.close();
});
