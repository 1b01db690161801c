// The admin area in Chromium: a domain admin runs catchall for their own
// domain and cannot touch another; an operator reads the queue.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTern, launchChromium, smtpSend, smtpRcpt, imap, signIn } from '../harness.mjs';

const PW = 'correct horse battery';
let tern, browser;

before(async () => {
  // Outbound mail for remote.example goes to a closed port, so it waits in
  // the queue with a reason, as in an outage.
  tern = await startTern({
    TERN_RELAY__ENABLED: 'true',
    TERN_RELAY__ROUTES: 'remote.example=127.0.0.1:1',
    TERN_QUEUE__POLL_INTERVAL_MS: '200',
  });
  for (const d of ['a.test', 'b.test']) tern.cli(['domain', 'add', d]);
  tern.cli(['user', 'add', 'boss@a.test', '--role', 'domain_admin'], `${PW}\n`);
  tern.cli(['user', 'add', 'catch@a.test'], `${PW}\n`);
  tern.cli(['user', 'add', 'info@a.test'], `${PW}\n`);
  tern.cli(['user', 'add', 'info@b.test'], `${PW}\n`);
  tern.cli(['user', 'add', 'root@a.test', '--role', 'admin'], `${PW}\n`);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tern?.stop();
});

async function session(address, opts = {}) {
  const ctx = await browser.newContext(opts);
  const page = await ctx.newPage();
  await signIn(page, tern.base, address, PW);
  return { ctx, page };
}

for (const js of [true, false]) {
  test(`domain admin sets catchall to an account, then to reject (JavaScript ${js ? 'on' : 'off'})`, async () => {
    const { ctx, page } = await session('boss@a.test', { javaScriptEnabled: js });
    await page.goto(`${tern.base}/admin`);
    const domains = await page.getByTestId('domains').locator('tbody td:first-child').allInnerTexts();
    assert.deepEqual(domains, ['a.test'], 'only their own domain is listed');
    await page.getByRole('link', { name: 'a.test' }).click();
    await page.getByRole('heading', { name: 'a.test', level: 1 }).waitFor();

    await page.locator('input[name=mode][value=account]').check();
    await page.locator('select[name=account]').selectOption('catch');
    await page.getByRole('button', { name: 'Save catchall' }).click();
    await page.getByTestId('ok').getByText('Catchall saved.').waitFor();
    const subject = `Lost letter ${js}`;
    await smtpSend(tern.smtpPort, 'someone@remote.example', ['nobody-here@a.test'],
      `From: someone@remote.example\nTo: nobody-here@a.test\nSubject: ${subject}\n\nHello?\n`);
    assert.ok(imap(tern.imapsPort, 'catch@a.test', PW, 'INBOX').subjects.includes(subject));

    const text = `No such person at a.test; write to info@a.test (${js ? 'js' : 'plain'})`;
    await page.locator('input[name=mode][value=reject]').check();
    await page.locator('input[name=text]').fill(text);
    await page.getByRole('button', { name: 'Save catchall' }).click();
    await page.getByTestId('ok').getByText('Catchall saved.').waitFor();
    assert.equal(await smtpRcpt(tern.smtpPort, 'someone@remote.example', 'nobody-here@a.test'), `550 5.1.1 ${text}`);
    // Real addresses still work.
    assert.equal(await smtpRcpt(tern.smtpPort, 'someone@remote.example', 'info@a.test'), '250 2.1.5 Recipient OK');
    // The page shows the saved state.
    await page.goto(`${tern.base}/admin/domain?d=a.test`);
    assert.equal(await page.locator('input[name=mode][value=reject]').isChecked(), true);
    assert.equal(await page.locator('input[name=text]').inputValue(), text);
    await ctx.close();
  });
}

test('a domain admin cannot see or change another domain: page, server function, raw POST', async () => {
  const { ctx, page } = await session('boss@a.test');
  const resp = await page.goto(`${tern.base}/admin/domain?d=b.test`);
  assert.equal(resp.status(), 403);
  assert.match(await page.getByRole('alert').innerText(), /403 Forbidden: you do not manage this/);
  assert.ok(!(await page.content()).includes('info@b.test'), 'nothing of b.test is shown');

  // The server function, called from the page with the right CSRF token.
  await page.goto(`${tern.base}/admin/domain?d=a.test`);
  const csrf = await page.locator('input[name=csrf]').first().inputValue();
  const viaFn = await page.evaluate(async (csrf) => {
    const body = new URLSearchParams({ csrf, domain: 'b.test', mode: 'account', account: 'info' });
    const r = await fetch('/api/admin_catchall', { method: 'POST', body });
    return [r.status, await r.text()];
  }, csrf);
  assert.equal(viaFn[0], 403, viaFn[1]);
  // A raw POST outside the browser with the session cookie and token.
  const cookie = (await ctx.cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
  for (const [op, extra] of [['add_account', { address: 'evil@b.test', password: 'long enough pw', role: 'user' }], ['password', { address: 'info@b.test', password: 'hijacked password' }], ['add_domain', { domain: 'c.test' }]]) {
    const r = await fetch(`${tern.base}/api/admin_${op}`, {
      method: 'POST',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf, domain: extra.domain ?? 'b.test', ...extra }),
      redirect: 'manual',
    });
    assert.equal(r.status, 403, `${op}: ${await r.text()}`);
  }
  // Nothing changed for b.test, and the old password still works over IMAP.
  assert.match(tern.cli(['domain', 'list']), /^b\.test$/m);
  assert.deepEqual(imap(tern.imapsPort, 'info@b.test', PW, 'INBOX').subjects, []);
  assert.ok(!tern.cli(['user', 'list']).includes('evil@b.test'));
  // Nor may they open the operator pages.
  assert.equal((await page.goto(`${tern.base}/admin/queue`)).status(), 403);
  await ctx.close();
});

test('accounts on the domain page: add, quota, disable; a plain user gets no admin area', async () => {
  const { ctx, page } = await session('boss@a.test');
  await page.goto(`${tern.base}/admin/domain?d=a.test`);
  const add = page.locator('form[action="/api/admin_add_account"]');
  assert.deepEqual(await add.locator('select[name=role] option').allInnerTexts(), ['user', 'domain_admin'], 'a domain admin cannot hand out admin');
  await add.locator('input[name=address]').fill('new@a.test');
  await add.locator('input[name=password]').fill('a fine password');
  await add.getByRole('button', { name: 'Add account' }).click();
  await page.getByTestId('ok').getByText('Account new@a.test added.').waitFor();
  const row = () => page.getByTestId('accounts').locator('tbody tr', { hasText: 'new@a.test' });
  await row().locator('form', { has: page.locator('input[name=quota_mb]') }).locator('input[name=quota_mb]').fill('5');
  await row().locator('form', { has: page.locator('input[name=quota_mb]') }).getByRole('button', { name: 'Set' }).click();
  await page.getByTestId('ok').getByText('Quota of new@a.test set.').waitFor();
  assert.equal(await row().locator('input[name=quota_mb]').inputValue(), '5');
  await row().getByRole('button', { name: 'Disable' }).click();
  await page.getByTestId('ok').getByText('new@a.test disabled.').waitFor();
  assert.match(await row().innerText(), /Disabled/);
  assert.match(tern.cli(['user', 'list', 'a.test']), /^new@a\.test\tuser\t0\/5242880\tdisabled$/m);
  assert.throws(() => imap(tern.imapsPort, 'new@a.test', 'a fine password', 'INBOX'), 'a disabled account cannot log in');
  await ctx.close();

  const user = await session('info@a.test');
  const resp = await user.page.goto(`${tern.base}/admin`);
  assert.equal(resp.status(), 403);
  assert.match(await user.page.getByRole('alert').innerText(), /admin area is for admins and domain admins/);
  await user.ctx.close();
});

test('the audit log records who did what, when, from which IP', async () => {
  const { ctx, page } = await session('boss@a.test');
  await page.goto(`${tern.base}/admin/audit`);
  const rows = await page.getByTestId('audit').locator('tbody tr').evaluateAll((trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText)));
  const mine = rows.filter((r) => r[1] === 'boss@a.test' && r[3] === 'catchall.set');
  assert.equal(mine.length, 4, JSON.stringify(rows));
  assert.ok(mine.every((r) => r[2] === '127.0.0.1' && r[4] === 'a.test'), JSON.stringify(mine));
  assert.match(mine[0][6], /^reject: No such person/);
  assert.equal(mine[1][6], 'account catch@a.test');
  // A domain admin sees their domains' entries only; the refused attempts
  // on b.test changed nothing and are not there.
  assert.ok(rows.every((r) => r[4] === 'a.test'), JSON.stringify(rows));
  // The DNS helper's records, and the autoconfig they point mail clients to.
  await page.goto(`${tern.base}/admin/domain?d=a.test`);
  const dns = await page.getByTestId('dns').innerText();
  assert.match(dns, /^a\.test\. 3600 IN MX 10 localhost\.$/m);
  assert.match(dns, /^a\.test\. 3600 IN TXT "v=spf1 mx -all"$/m);
  assert.match(dns, /^_dmarc\.a\.test\. 3600 IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@a\.test"$/m);
  assert.match(dns, /^_submission\._tcp\.a\.test\. 3600 IN SRV 0 1 587 localhost\.$/m);
  // Its DKIM keys: Ed25519 in one string, RSA-2048 split in 255-byte ones.
  assert.match(dns, /^t\d{8}e\._domainkey\.a\.test\. 3600 IN TXT "v=DKIM1; k=ed25519; p=[A-Za-z0-9+\/]{43}="$/m);
  assert.match(dns, /^t\d{8}r\._domainkey\.a\.test\. 3600 IN TXT "v=DKIM1; k=rsa; p=MIIBIjANBg[^"]+" "[^"]+"$/m);
  // Rotating makes a new pair; the old one stays listed (still published).
  await page.getByTestId('dkim-rotate').click();
  await page.getByText(/New DKIM keys t\d{8}\w*e and t\d{8}\w*r/).waitFor();
  const rotated = await page.getByTestId('dns').innerText();
  assert.equal((rotated.match(/_domainkey\.a\.test\./g) || []).length, 4, rotated);
  assert.match(rotated, /rotated out; keep it published until/);
  const xml = await (await fetch(`${tern.base}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=boss@a.test`)).text();
  assert.match(xml, /<domain>a\.test<\/domain>/);
  assert.match(xml, new RegExp(`<port>${tern.imapsPort}</port>\\s*<socketType>SSL</socketType>`));
  await ctx.close();
});

test('an operator answers from /admin alone: how many wait, where, since when, why', async () => {
  // One message to an unreachable destination, sent through the webmail.
  const { ctx, page } = await session('info@a.test');
  await page.goto(`${tern.base}/compose`);
  await page.locator('#to').fill('friend@remote.example');
  await page.locator('#subject').fill('Stuck in the queue');
  await page.locator('#body').fill('This waits.');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.waitForURL(/sent=1$/);
  await ctx.close();

  const op = await session('root@a.test');
  // Wait until the first attempt has failed and left its reason.
  let why = '';
  for (let i = 0; i < 100 && !why; i++) {
    await op.page.goto(`${tern.base}/admin/queue`);
    why = await op.page.getByTestId('entries').locator('tbody tr td.reply').first().innerText().catch(() => '');
    if (!why) await new Promise((r) => setTimeout(r, 200));
  }
  assert.match(why, /refused|connect/i, 'the entry says why it waits');
  assert.equal(await op.page.getByTestId('waiting').innerText(), '1');
  const lanes = Number(await op.page.getByTestId('lane-fresh').innerText()) + Number(await op.page.getByTestId('lane-retry').innerText());
  assert.equal(lanes, 1);
  assert.match(await op.page.getByTestId('oldest').innerText(), /^\d{4}-\d\d-\d\d \d\d:\d\d \(\d+ s ago\)$/);
  const dest = op.page.getByTestId('destinations').locator('tbody tr', { hasText: 'remote.example' });
  assert.equal(await dest.locator('td').nth(1).innerText(), '1');
  assert.match(await dest.locator('td.reply').innerText(), /refused|connect/i);
  const entry = op.page.getByTestId('entries').locator('tbody tr', { hasText: 'friend@remote.example' });
  assert.match(await entry.innerText(), /info@a\.test/);

  // An action no button sends is refused before it runs (a typed op).
  const csrf = await op.page.locator('input[name=csrf]').first().inputValue();
  const bogus = await op.page.evaluate(async (csrf) => {
    const body = new URLSearchParams({ csrf, op: 'explode', domain: 'remote.example' });
    const r = await fetch('/api/queue_action', { method: 'POST', body });
    return [r.status, await r.text()];
  }, csrf);
  assert.notEqual(bogus[0], 200, bogus[1]);
  assert.match(bogus[1], /"Invalid":"unknown variant `explode`/);
  assert.equal(await op.page.getByTestId('waiting').innerText(), '1', 'nothing changed');

  // Hold the destination, then delete its mail; both show at once.
  await dest.getByRole('button', { name: 'Hold' }).click();
  await op.page.getByTestId('ok').waitFor();
  assert.match(await op.page.getByTestId('destinations').innerText(), /remote\.example \(held\)/);
  // The delivery log has the attempt, found by recipient.
  await op.page.goto(`${tern.base}/admin/log?q=friend%40remote.example`);
  const log = await op.page.getByTestId('log').locator('tbody tr').first().innerText();
  assert.match(log, /deferred/);
  await op.page.goto(`${tern.base}/admin/queue`);
  await op.page.getByTestId('destinations').locator('tbody tr', { hasText: 'remote.example' }).getByRole('button', { name: 'Delete all' }).click();
  await op.page.getByTestId('ok').waitFor();
  assert.equal(await op.page.getByTestId('waiting').innerText(), '0');
  // The operator's actions are audited too.
  await op.page.goto(`${tern.base}/admin/audit`);
  const audit = await op.page.getByTestId('audit').innerText();
  assert.match(audit, /root@a\.test\t127\.0\.0\.1\tqueue\.hold\t\tdestination remote\.example/);
  assert.match(audit, /queue\.delete/);
  await op.ctx.close();
});

test('markup in alias targets and the audit log is text in /admin, and the page has a script CSP', async () => {
  // A quoted local part (RFC 5321 §4.1.2) can carry any printable text, so
  // an outside forwarding target is where markup can reach the admin pages.
  const target = `"<img src=x onerror=top.xss='alias'>"@remote.example`;
  tern.cli(['alias', 'add', 'fwd@a.test', target]);
  const { ctx, page } = await session('root@a.test');
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  const resp = await page.goto(`${tern.base}/admin/domain?d=a.test`);
  assert.match(resp.headers()['content-security-policy'], /script-src 'nonce-[A-Za-z0-9_-]+'/);
  const item = page.locator('ul.aliases li', { hasText: 'fwd@a.test' });
  await item.waitFor();
  assert.match(await item.innerText(), /fwd@a\.test → "<img src=x onerror=top\.xss='alias'>"@remote\.example/);
  await page.goto(`${tern.base}/admin/audit`);
  await page.waitForTimeout(800);
  assert.equal(await page.evaluate(() => window.xss), undefined);
  assert.deepEqual(dialogs, []);
  await ctx.close();
});
