// The webmail in real Chromium against a real tern: mail arrives over real
// SMTP, and Python's imaplib checks what the browser did.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTern, launchChromium, smtpSend, imap, signIn } from '../harness.mjs';

const PW = 'correct horse battery';
const ALICE = 'alice@example.test';
const BOB = 'bob@example.test';
const SHOTS = join(import.meta.dirname, '..', 'screenshots');
let tern, browser;

before(async () => {
  tern = await startTern({ TERN_WEB__AUTOSAVE_SECS: '1' });
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

async function session(address, opts = {}) {
  const ctx = await browser.newContext(opts);
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await signIn(page, tern.base, address, PW);
  return { ctx, page, errors };
}

function rowFor(page, subject) {
  const exact = new RegExp(`^${subject.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
  return page.locator('li.msg', { has: page.locator('.subject', { hasText: exact }) });
}

test('a message delivered over SMTP shows in the inbox and reads', async () => {
  const reply = await smtpSend(tern.smtpPort, 'carol@remote.example', [ALICE],
    'From: Carol <carol@remote.example>\nTo: alice@example.test\nSubject: Lunch on Friday?\n' +
    'Message-ID: <lunch1@remote.example>\nDate: Sun, 29 Nov 2026 09:00:00 +0000\n\n' +
    'Hi Alice,\n\nShall we meet at noon by the harbour?\n\nCarol\n');
  assert.match(reply, /^250 /);

  const { ctx, page, errors } = await session(ALICE);
  const row = rowFor(page, 'Lunch on Friday?');
  await row.waitFor();
  assert.equal(await row.locator('.from').innerText(), 'Carol <carol@remote.example>');
  assert.match(await row.locator('.snippet').innerText(), /Shall we meet at noon/);
  assert.equal(await row.getAttribute('class'), 'msg unread');
  const inboxCount = page.locator('nav.folders li.current .unseen');
  assert.equal(await inboxCount.innerText(), '1');
  await page.screenshot({ path: join(SHOTS, 'inbox-light.png') });

  await row.locator('a.open').click();
  await page.waitForURL(/\/read\?f=INBOX&uid=1$/);
  await page.getByRole('heading', { name: 'Lunch on Friday?' }).waitFor();
  assert.equal(await page.getByTestId('from').innerText(), 'Carol <carol@remote.example>');
  assert.match(await page.getByTestId('body').innerText(), /^Hi Alice,\n\nShall we meet at noon by the harbour\?/);
  await page.screenshot({ path: join(SHOTS, 'message-light.png') });
  // Reading marked it read, which IMAP sees too.
  const box = imap(tern.imapsPort, ALICE, PW, 'INBOX');
  assert.deepEqual(box.subjects, ['Lunch on Friday?']);
  assert.ok(box.flags[0].includes('\\Seen'), JSON.stringify(box.flags));
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('new mail shows in the open inbox without a reload, or as a banner while messages are selected', async () => {
  const ERIN = 'erin@example.test';
  tern.cli(['user', 'add', ERIN], `${PW}\n`);
  await smtpSend(tern.smtpPort, 'carol@remote.example', [ERIN],
    'From: Carol <carol@remote.example>\nTo: erin@example.test\nSubject: First of two\n\nOne.\n');
  const { ctx, page, errors } = await session(ERIN);
  await rowFor(page, 'First of two').waitFor();
  // The page listens once hydrated (/mail/events).
  await page.waitForTimeout(1500);
  assert.equal(await page.getByTestId('new-mail').count(), 0);
  await smtpSend(tern.smtpPort, 'carol@remote.example', [ERIN],
    'From: Carol <carol@remote.example>\nTo: erin@example.test\nSubject: Second of two\n\nTwo.\n');
  // It appears in the list by itself.
  await rowFor(page, 'Second of two').waitFor({ timeout: 5000 });
  assert.equal(await page.getByTestId('new-mail').count(), 0);
  // With a message ticked, the list stays as it is (the selection would
  // be lost) and a banner offers the new mail instead.
  await page.waitForTimeout(1500);
  await rowFor(page, 'First of two').locator('input[type=checkbox]').check();
  await smtpSend(tern.smtpPort, 'carol@remote.example', [ERIN],
    'From: Carol <carol@remote.example>\nTo: erin@example.test\nSubject: Third\n\nThree.\n');
  const banner = page.getByTestId('new-mail');
  await banner.waitFor({ timeout: 5000 });
  assert.match(await banner.innerText(), /New mail has arrived/);
  assert.ok(await rowFor(page, 'First of two').locator('input[type=checkbox]').isChecked());
  await banner.getByRole('link', { name: 'Show it' }).click();
  await rowFor(page, 'Third').waitFor();
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('send to another local user: it arrives in their inbox and over IMAP', async () => {
  const { ctx, page, errors } = await session(ALICE);
  // Keyboard: "c" opens compose once the page has hydrated.
  await page.waitForFunction(() => document.querySelector('[data-key="c"]'));
  await page.waitForTimeout(300);
  await page.keyboard.press('c');
  await page.waitForURL(/\/compose$/);
  await page.locator('#to').fill(BOB);
  await page.locator('#subject').fill('Project kickoff');
  await page.locator('#body').fill('Bob,\n\nKickoff is on Monday at ten.\n\nAlice');
  assert.match(await page.locator('.hint').first().innerText(), /Attachments up to 25 MB in total\./);
  await page.screenshot({ path: join(SHOTS, 'compose-light.png') });
  await page.getByRole('button', { name: 'Send' }).click();
  await page.waitForURL(/\/mail\?f=INBOX&sent=1$/);
  assert.deepEqual(imap(tern.imapsPort, ALICE, PW, 'Sent').subjects, ['Project kickoff']);
  assert.deepEqual(errors, []);
  await ctx.close();

  const bob = await session(BOB);
  const row = rowFor(bob.page, 'Project kickoff');
  await row.waitFor();
  assert.equal(await row.locator('.from').innerText(), ALICE);
  const box = imap(tern.imapsPort, BOB, PW, 'INBOX');
  assert.deepEqual(box.subjects, ['Project kickoff']);
  await bob.ctx.close();
});

test('reply with an attachment: the recipient downloads the same bytes', async () => {
  // Every byte value, so any re-encoding would show.
  const bytes = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) % 256));
  const bob = await session(BOB);
  await rowFor(bob.page, 'Project kickoff').locator('a.open').click();
  await bob.page.getByRole('heading', { name: 'Project kickoff' }).waitFor();
  await bob.page.getByRole('link', { name: 'Reply', exact: true }).click();
  await bob.page.waitForURL(/\/compose\?mode=reply/);
  assert.equal(await bob.page.locator('#to').inputValue(), ALICE);
  assert.equal(await bob.page.locator('#subject').inputValue(), 'Re: Project kickoff');
  const quoted = await bob.page.locator('#body').inputValue();
  assert.match(quoted, /wrote:\n> Bob,\n>\n> Kickoff is on Monday at ten\./);
  await bob.page.locator('#body').fill('Agenda attached.\n\n' + quoted);
  await bob.page.locator('#attachment').setInputFiles({ name: '../agenda\u202Efdp.bin', mimeType: 'application/octet-stream', buffer: bytes });
  await bob.page.getByRole('button', { name: 'Send' }).click();
  await bob.page.waitForURL(/sent=1$/);
  await bob.ctx.close();

  const { ctx, page } = await session(ALICE);
  await rowFor(page, 'Re: Project kickoff').locator('a.open').click();
  await page.getByRole('heading', { name: 'Re: Project kickoff' }).waitFor();
  // The reply joined the conversation of Alice's sent message.
  await page.getByRole('link', { name: 'Conversation (2)' }).waitFor();
  const link = page.locator('.attachments a');
  assert.equal(await link.innerText(), 'agendafdp.bin', 'path, RTLO and dots are gone');
  assert.match(await page.locator('.attachments .size').innerText(), /^3 KB$/);
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  assert.equal(download.suggestedFilename(), 'agendafdp.bin');
  const got = readFileSync(await download.path());
  assert.ok(got.equals(bytes), `downloaded ${got.length} bytes differ from the ${bytes.length} sent`);
  const box = imap(tern.imapsPort, BOB, PW, 'INBOX');
  // Bob's original got \Answered.
  assert.ok(box.flags[0].includes('\\Answered'), JSON.stringify(box.flags));

  // The conversation view: Alice's sent message and Bob's reply, in order.
  await page.getByRole('link', { name: 'Conversation (2)' }).click();
  await page.getByRole('heading', { name: /^Conversation: / }).waitFor();
  assert.deepEqual(await page.locator('ol.thread .subject').allInnerTexts(), ['Project kickoff', 'Re: Project kickoff']);
  assert.deepEqual(await page.locator('ol.thread .where').allInnerTexts(), ['Sent', 'Inbox']);

  // Forward carries the original attachment, byte for byte; the address
  // box offers previous correspondents.
  await page.goBack();
  await page.getByRole('link', { name: 'Forward' }).click();
  await page.waitForURL(/mode=forward/);
  assert.equal(await page.locator('#subject').inputValue(), 'Fwd: Re: Project kickoff');
  assert.match(await page.locator('.notice').innerText(), /Attachments included: agendafdp\.bin/);
  const offered = await page.locator('datalist#people option').evaluateAll((os) => os.map((o) => o.value));
  assert.ok(offered.includes('bob@example.test') && offered.includes('Carol <carol@remote.example>'), JSON.stringify(offered));
  await page.locator('#to').fill(BOB);
  await page.getByRole('button', { name: 'Send' }).click();
  await page.waitForURL(/sent=1$/);
  const fwd = imap(tern.imapsPort, BOB, PW, 'INBOX');
  const i = fwd.subjects.indexOf('Fwd: Re: Project kickoff');
  assert.ok(i >= 0, JSON.stringify(fwd.subjects));
  assert.deepEqual(fwd.attachments[i], [{ name: 'agendafdp.bin', bytes: 3000 }]);
  await ctx.close();
});

test('search, move to a folder without a reload, and IMAP sees the move', async () => {
  for (const [subject, body] of [['Quarterly zebra report', 'Numbers for Q3.'], ['Garden party', 'Bring a hat.']]) {
    await smtpSend(tern.smtpPort, 'news@remote.example', [ALICE],
      `From: news@remote.example\nTo: ${ALICE}\nSubject: ${subject}\n\n${body}\n`);
  }
  const { ctx, page, errors } = await session(ALICE);
  // Make a folder through the folders page.
  await page.goto(`${tern.base}/folders`);
  await page.locator('#newfolder').fill('Projects');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.locator('ul.folderlist .name', { hasText: 'Projects' }).waitFor();

  await page.goto(`${tern.base}/mail?f=INBOX`);
  await page.waitForTimeout(500); // hydration
  await page.keyboard.press('/');
  assert.equal(await page.evaluate(() => document.activeElement?.name), 'q', '"/" focuses search');
  await page.keyboard.type('zebr');
  await page.keyboard.press('Enter');
  await page.waitForURL(/q=zebr/);
  const rows = page.locator('li.msg');
  await rows.first().waitFor();
  assert.equal(await rows.count(), 1);
  assert.equal(await rows.first().locator('.subject').innerText(), 'Quarterly zebra report');
  assert.match(await page.getByTestId('count').innerText(), /^1 found in \d+ ms$/);
  // Body words are indexed too.
  await page.goto(`${tern.base}/mail?f=INBOX&q=${encodeURIComponent('hat')}`);
  assert.equal(await page.locator('li.msg .subject').innerText(), 'Garden party');

  await page.goto(`${tern.base}/mail?f=INBOX&q=zebra`);
  await page.waitForTimeout(500);
  await page.evaluate(() => { window.__noReload = 'still here'; });
  await page.locator('li.msg input[type=checkbox]').check();
  await page.locator('select[name=target]').selectOption('Projects');
  await page.getByRole('button', { name: 'Move', exact: true }).click();
  await page.locator('li.msg .where', { hasText: 'Projects' }).waitFor();
  assert.equal(await page.evaluate(() => window.__noReload), 'still here', 'the action ran without a page load');
  assert.deepEqual(imap(tern.imapsPort, ALICE, PW, 'Projects').subjects, ['Quarterly zebra report']);
  assert.ok(!imap(tern.imapsPort, ALICE, PW, 'INBOX').subjects.includes('Quarterly zebra report'));
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('keyboard alone: j/k move through the list, Enter opens, r replies', async () => {
  const { ctx, page, errors } = await session(ALICE);
  await page.goto(`${tern.base}/mail?f=INBOX`);
  await page.waitForTimeout(500); // hydration
  const links = await page.locator('li.msg a.open').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  assert.ok(links.length >= 2, JSON.stringify(links));
  const focused = () => page.evaluate(() => document.activeElement?.getAttribute('href'));
  await page.keyboard.press('j');
  assert.equal(await focused(), links[0]);
  await page.keyboard.press('j');
  assert.equal(await focused(), links[1]);
  await page.keyboard.press('k');
  assert.equal(await focused(), links[0]);
  await page.keyboard.press('Enter');
  await page.waitForURL((u) => u.href.endsWith(links[0]));
  await page.locator('h1#subject').waitFor();
  await page.waitForTimeout(300);
  await page.keyboard.press('r');
  await page.waitForURL(/\/compose\?mode=reply/);
  assert.match(await page.locator('#subject').inputValue(), /^Re: /);
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('hostile HTML runs no script and loads nothing remote until asked', async () => {
  const html = [
    '<p id="hello">Hello from the corpus</p>',
    '<script>top.xss = "script"; parent.xss = "script"</script>',
    '<svg onload="top.xss=\'svg\'"><circle r="5"/></svg>',
    '<img src="x" onerror="top.xss=\'onerror\'">',
    '<a id="js" href="javascript:top.xss=\'href\'">click me</a>',
    '<meta http-equiv="refresh" content="0;url=javascript:top.xss=\'meta\'">',
    '<div style="width: expression(top.xss=\'css\'); background: url(javascript:top.xss=1)">css</div>',
    '<base href="javascript:top.xss=\'base\'//"><a href="relative">rel</a>',
    '<iframe src="javascript:top.xss=\'iframe\'"></iframe>',
    '<form action="javascript:top.xss=\'form\'"><button>go</button></form>',
    '<object data="javascript:top.xss=\'object\'"></object>',
    '<img src="http://127.0.0.1:1/tracker.gif" alt="tracker">',
  ].join('\n');
  await smtpSend(tern.smtpPort, 'mallory@remote.example', [ALICE],
    'From: Mallory <mallory@remote.example>\nTo: alice@example.test\n' +
    'Subject: <img src=x onerror="top.xss=\'subject\'">Invoice\nMIME-Version: 1.0\n' +
    'Content-Type: text/html; charset=utf-8\n\n' + html + '\n');
  const { ctx, page } = await session(ALICE);
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  const remote = [];
  page.on('request', (r) => { if (r.url().includes('tracker')) remote.push(r.url()); });
  await page.locator('li.msg a.open', { hasText: 'Invoice' }).click();
  await page.waitForURL(/\/read/);
  const frameEl = page.locator('iframe.htmlbody');
  await frameEl.waitFor();
  assert.equal(await frameEl.getAttribute('sandbox'), 'allow-popups allow-popups-to-escape-sandbox');
  const frame = page.frameLocator('iframe.htmlbody');
  await frame.getByText('Hello from the corpus').waitFor();
  // The subject is text, not markup.
  assert.equal(await page.locator('h1#subject').innerText(), '<img src=x onerror="top.xss=\'subject\'">Invoice');
  await frame.getByText('click me').click().catch(() => {});
  await page.waitForTimeout(1000);
  assert.equal(await page.evaluate(() => window.xss), undefined, 'no payload ran');
  assert.deepEqual(dialogs, []);
  assert.match(page.url(), /\/read\?/);
  const doc = await page.evaluate(async (u) => (await fetch(u)).text(), await frameEl.getAttribute('src'));
  const src = doc.split('<body>')[1];
  for (const bad of ['<script', 'onload', 'onerror', 'javascript:', 'expression(', '<base', '<meta', '<iframe', '<form', '<object', 'tracker.gif']) {
    assert.ok(!src.toLowerCase().includes(bad), `${bad} reached the frame: ${src}`);
  }
  assert.deepEqual(remote, [], 'no remote image was fetched');
  await page.getByText('1 remote image(s) hidden').waitFor();
  await page.getByRole('link', { name: 'Show images in this message' }).click();
  await page.waitForURL(/images=1/);
  await page.locator('iframe.htmlbody[src$="images=1"]').waitFor({ state: 'attached', timeout: 10000 }).catch(async (e) => {
    throw new Error(`frame src is ${await frameEl.getAttribute('src')}: ${e}`);
  });
  await page.frameLocator('iframe.htmlbody').locator('img[alt=tracker]').waitFor({ state: 'attached' });
  await page.waitForTimeout(500);
  assert.ok(remote.length >= 1, 'after asking, the image is requested');
  assert.equal(await page.evaluate(() => window.xss), undefined);
  await ctx.close();
});

test('markup in every header a page shows is text: title, subject, sender, attachment, folder', async () => {
  const subject = `hi </title><script>top.xss='title'</script><img src=x onerror="top.xss='subject'">`;
  await smtpSend(tern.smtpPort, 'evil@remote.example', [ALICE],
    `From: "<img src=x onerror=top.xss='from'>" <evil@remote.example>\n` +
    `To: ${ALICE}\nSubject: ${subject}\nMIME-Version: 1.0\n` +
    'Content-Type: multipart/mixed; boundary="b1"\n\n' +
    '--b1\nContent-Type: text/plain\n\nSee the attachment.\n' +
    '--b1\nContent-Type: text/plain; name="x.txt"\n' +
    `Content-Disposition: attachment; filename="<img src=x onerror=top.xss='att'>.txt"\n\nfile\n` +
    '--b1--\n');
  const { ctx, page, errors } = await session(ALICE);
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  await page.goto(`${tern.base}/mail?f=INBOX`);
  const href = await page.locator('li.msg a.open', { hasText: 'hi </title>' }).getAttribute('href');

  // A full load: the title is the subject as text, and the page carries a
  // nonce CSP (script-src without 'unsafe-inline').
  const resp = await page.goto(`${tern.base}${href}`);
  const csp = resp.headers()['content-security-policy'];
  assert.match(csp, /script-src 'nonce-[A-Za-z0-9_-]+' 'strict-dynamic' 'wasm-unsafe-eval'/);
  assert.match(csp, /object-src 'none'/);
  assert.match(csp, /base-uri 'none'/);
  assert.ok(!/unsafe-inline/.test(csp.split(';').find((d) => d.includes('script-src'))), csp);
  const html = await resp.text();
  assert.ok(!html.includes("<script>top.xss"), 'the subject reached the HTML as markup');
  await page.getByRole('heading', { name: /^hi / }).waitFor();
  assert.equal(await page.title(), `${subject} · Tern`);
  assert.equal(await page.locator('h1#subject').innerText(), subject);
  assert.equal(await page.getByTestId('from').innerText(), `<img src=x onerror=top.xss='from'> <evil@remote.example>`);
  await page.locator('section.attachments a', { hasText: '.txt' }).waitFor();
  await page.waitForTimeout(800); // hydration, and any payload's chance to run
  assert.equal(await page.evaluate(() => window.xss), undefined, 'full load');
  assert.equal(await page.title(), `${subject} · Tern`, 'hydration keeps the title as text');

  // Reload, and a new tab on the same URL.
  await page.reload();
  await page.locator('h1#subject').waitFor();
  assert.equal(await page.evaluate(() => window.xss), undefined, 'reload');
  const tab = await ctx.newPage();
  await tab.goto(`${tern.base}${href}`);
  await tab.locator('h1#subject').waitFor();
  assert.equal(await tab.evaluate(() => window.xss), undefined, 'new tab');
  assert.equal(await tab.title(), `${subject} · Tern`);
  await tab.close();

  // Client-side navigation from the list (the hydrated router).
  await page.goto(`${tern.base}/mail?f=INBOX`);
  await page.waitForTimeout(500);
  await page.locator('li.msg .from', { hasText: "onerror=top.xss='from'" }).first().waitFor();
  await page.locator('li.msg a.open', { hasText: 'hi </title>' }).click();
  await page.waitForURL(/\/read\?/);
  await page.locator('h1#subject').waitFor();
  await page.waitForFunction((t) => document.title === t, `${subject} · Tern`);
  assert.equal(await page.evaluate(() => window.xss), undefined, 'client-side navigation');

  // A folder named with markup, on the folders page and in the sidebar.
  const folder = `<img src=x onerror=top.xss='folder'>`;
  await page.goto(`${tern.base}/folders`);
  await page.locator('#newfolder').fill(folder);
  await page.getByRole('button', { name: 'Create' }).click();
  await page.locator('ul.folderlist .name', { hasText: folder }).waitFor();
  await page.goto(`${tern.base}/mail?f=${encodeURIComponent(folder)}`);
  await page.locator('nav.folders a', { hasText: folder }).waitFor();
  await page.waitForTimeout(500);
  assert.equal(await page.evaluate(() => window.xss), undefined, 'folder names');
  assert.deepEqual(dialogs, []);
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('with JavaScript off: sign in, read, reply and send', async () => {
  const ctx = await browser.newContext({ javaScriptEnabled: false });
  const page = await ctx.newPage();
  await signIn(page, tern.base, BOB, PW);
  await rowFor(page, 'Project kickoff').locator('a.open').click();
  await page.getByRole('heading', { name: 'Project kickoff' }).waitFor();
  assert.match(await page.getByTestId('body').innerText(), /Kickoff is on Monday/);
  await page.getByRole('link', { name: 'Reply', exact: true }).click();
  await page.locator('#body').fill('Plain HTML works too.');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.waitForURL(/sent=1$/);
  // A plain form action: flag, with a full page load.
  await rowFor(page, 'Project kickoff').locator('input[type=checkbox]').check();
  await page.getByRole('button', { name: 'Flag', exact: true }).click();
  await rowFor(page, 'Project kickoff').locator('.flag').waitFor();
  // Delete goes to Trash; deleting from Trash removes it for good.
  await rowFor(page, 'Fwd: Re: Project kickoff').locator('input[type=checkbox]').check();
  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  assert.deepEqual(imap(tern.imapsPort, BOB, PW, 'Trash').subjects, ['Fwd: Re: Project kickoff']);
  await page.goto(`${tern.base}/mail?f=Trash`);
  await rowFor(page, 'Fwd: Re: Project kickoff').locator('input[type=checkbox]').check();
  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  await page.getByText('No messages here.').waitFor();
  assert.deepEqual(imap(tern.imapsPort, BOB, PW, 'Trash').subjects, []);
  await ctx.close();
  const subjects = imap(tern.imapsPort, ALICE, PW, 'INBOX').subjects;
  assert.equal(subjects.filter((s) => s === 'Re: Project kickoff').length, 2, JSON.stringify(subjects));
});

test('a cross-site form post is refused, and so is a wrong CSRF token', async () => {
  const { ctx, page } = await session(ALICE);
  // Another origin (a different port is a different origin, the same site).
  const evil = createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<form id="f" method="post" action="${tern.base}/api/message_action">
      <input name="csrf" value="guess"><input name="f" value="INBOX"><input name="uids[]" value="1">
      <input name="op" value="delete"><input name="back" value="/"></form>
      <script>document.getElementById('f').submit()</script>`);
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/message_action')),
    page.goto(`http://127.0.0.1:${evil.address().port}/`),
  ]);
  assert.equal(resp.status(), 403);
  assert.match(await resp.text(), /cross-site request refused/);
  evil.close();
  // Same origin but without the session's token: refused too.
  await page.goto(`${tern.base}/mail?f=INBOX`);
  const status = await page.evaluate(async () => {
    const body = new URLSearchParams({ csrf: 'not-the-token', f: 'INBOX', 'uids[]': '1', op: 'delete', back: '/' });
    return (await fetch('/api/message_action', { method: 'POST', body })).status;
  });
  assert.equal(status, 403);
  assert.ok(imap(tern.imapsPort, ALICE, PW, 'INBOX').subjects.includes('Lunch on Friday?'), 'nothing was deleted');
  await ctx.close();
});

test('drafts autosave while typing, one draft per message, gone once sent', async () => {
  const { ctx, page, errors } = await session(ALICE);
  await page.goto(`${tern.base}/compose`);
  await page.waitForTimeout(500); // hydration
  await page.locator('#to').fill(BOB);
  await page.locator('#subject').fill('Autosaved plan');
  await page.locator('#body').fill('First thoughts.');
  await page.getByTestId('autosave').getByText('Draft saved automatically.').waitFor();
  const waitDraft = async (want) => {
    for (let i = 0; i < 50; i++) {
      const d = imap(tern.imapsPort, ALICE, PW, 'Drafts');
      if (d.texts.length === 1 && d.texts[0].includes(want)) return d;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`no single draft containing ${want}: ${JSON.stringify(imap(tern.imapsPort, ALICE, PW, 'Drafts'))}`);
  };
  let d = await waitDraft('First thoughts.');
  assert.deepEqual(d.subjects, ['Autosaved plan']);
  await page.locator('#body').fill('First thoughts. Second thoughts.');
  d = await waitDraft('Second thoughts.');
  assert.equal(d.subjects.length, 1, 'the new save replaced the old draft');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.waitForURL(/sent=1$/);
  assert.deepEqual(imap(tern.imapsPort, ALICE, PW, 'Drafts').subjects, [], 'sending removed the draft');
  assert.ok(imap(tern.imapsPort, BOB, PW, 'INBOX').subjects.includes('Autosaved plan'));
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('keywords a desktop client set show as labels in the list and on the message', async () => {
  const DORA = 'dora@example.test';
  tern.cli(['user', 'add', DORA], `${PW}\n`);
  const reply = await smtpSend(tern.smtpPort, 'carol@remote.example', [DORA],
    'From: Carol <carol@remote.example>\nTo: dora@example.test\nSubject: Tagged elsewhere\n' +
    'Message-ID: <tagged1@remote.example>\n\nTagged by Thunderbird.\n');
  assert.match(reply, /^250 /);
  // Thunderbird's "Important" tag and a tag of the user's own, over IMAP.
  const box = imap(tern.imapsPort, DORA, PW, 'INBOX', '$Label1 Project-X $MDNSent');
  assert.deepEqual(box.flags[0].filter((f) => !f.startsWith('\\')).sort(), ['$Label1', '$MDNSent', 'Project-X']);

  const { ctx, page, errors } = await session(DORA);
  const row = rowFor(page, 'Tagged elsewhere');
  await row.waitFor();
  assert.deepEqual(await row.locator('.label').allInnerTexts(), ['Important', 'Project-X']);
  await row.locator('a.open').click();
  await page.getByRole('heading', { name: 'Tagged elsewhere' }).waitFor();
  assert.deepEqual(await page.locator('div.labels .label .name').allInnerTexts(), ['Important', 'Project-X']);
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('screenshots: dark mode and phone width', async () => {
  for (const [name, opts] of [
    ['dark', { colorScheme: 'dark', viewport: { width: 1200, height: 800 } }],
    ['phone', { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true }],
    ['phone-dark', { colorScheme: 'dark', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true }],
  ]) {
    const { ctx, page } = await session(ALICE, opts);
    await page.locator('li.msg').first().waitFor();
    await page.screenshot({ path: join(SHOTS, `inbox-${name}.png`) });
    if (name.startsWith('phone')) {
      // No sideways scrolling on a phone.
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1));
    }
    await rowFor(page, 'Lunch on Friday?').locator('a.open').click();
    await page.getByTestId('body').waitFor();
    await page.screenshot({ path: join(SHOTS, `message-${name}.png`) });
    await page.goto(`${tern.base}/compose`);
    await page.locator('#to').waitFor();
    await page.screenshot({ path: join(SHOTS, `compose-${name}.png`) });
    await ctx.close();
  }
});
