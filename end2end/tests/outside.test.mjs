// Outside accounts in Chromium (issue 16): a second, independent tern is
// the outside provider. Through the pages, with JavaScript on and off:
// add the account by hand (the provider has no DNS here), trust its
// self-signed certificate after seeing it, see new mail arrive live (with
// JavaScript), read its mail in the unified inbox, and reply from it
// through the provider's submission server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { startTern, launchChromium, smtpSend, imap, signIn, freePort } from '../harness.mjs';

const PW = 'correct horse battery';
const FAR_PW = 'far away pass';
let home, far, browser, dns, farSmtps;

// A DNS server that knows nothing: every query is NXDOMAIN at once, so
// discovery ends quickly and nothing reaches real DNS.
function nxdomainServer() {
  const sock = createSocket('udp4');
  sock.on('message', (q, rinfo) => {
    if (q.length < 12) return;
    let i = 12;
    while (i < q.length && q[i] !== 0) i += q[i] + 1;
    const end = Math.min(i + 5, q.length);
    const r = Buffer.from(q.subarray(0, end));
    r[2] = 0x84 | (q[2] & 0x01); // QR, AA, RD as asked
    r[3] = 0x83; // RA, NXDOMAIN
    r.writeUInt16BE(1, 4);
    r.writeUInt32BE(0, 6);
    r.writeUInt16BE(0, 10);
    sock.send(r, rinfo.port, rinfo.address);
  });
  return new Promise((ok) => sock.bind(0, '127.0.0.1', () => ok(sock)));
}

before(async () => {
  dns = await nxdomainServer();
  farSmtps = await freePort();
  far = await startTern({ TERN_LISTENERS__SMTPS: `127.0.0.1:${farSmtps}` });
  far.cli(['domain', 'add', 'far.test']);
  for (const u of ['jo', 'kim', 'lee']) far.cli(['user', 'add', `${u}@far.test`], `${FAR_PW}\n`);
  home = await startTern({
    TERN_OUTSIDE__ALLOW_PRIVATE: 'true',
    TERN_OUTSIDE__NAMESERVER: `127.0.0.1:${dns.address().port}`,
    TERN_OUTSIDE__CACHE_INTERVAL_SECS: '1',
    TERN_OUTSIDE__AUTOCONFIG_HTTPS_PORT: '1',
    TERN_OUTSIDE__AUTOCONFIG_HTTP_PORT: '1',
  });
  home.cli(['domain', 'add', 'example.test']);
  home.cli(['user', 'add', 'alice@example.test'], `${PW}\n`);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await home?.stop();
  await far?.stop();
  dns?.close();
});

for (const [js, user] of [[true, 'jo'], [false, 'kim']]) {
  test(`add an outside account, read it in the unified inbox, reply from it (JavaScript ${js ? 'on' : 'off'})`, async () => {
    const address = `${user}@far.test`;
    const subject = `Postcard for ${user}`;
    await smtpSend(far.smtpPort, 'ann@elsewhere.test', [address],
      `From: Ann <ann@elsewhere.test>\nTo: ${address}\nSubject: ${subject}\nMessage-ID: <${user}-card@elsewhere.test>\n\nWish you were here.\n`);

    const ctx = await browser.newContext({ javaScriptEnabled: js });
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await signIn(page, home.base, 'alice@example.test', PW);
    await page.getByTestId('other-accounts').click();
    await page.getByRole('heading', { name: 'Other accounts' }).waitFor();
    await page.fill('#oaddr', address);
    await page.getByRole('button', { name: 'Find settings' }).click();
    await page.getByTestId('found-by').getByText('No settings were found').waitFor();

    // The servers by hand (Advanced is open when nothing was found).
    const fill = async (pw) => {
      await page.fill('#opw', pw);
      await page.fill('#oinhost', '127.0.0.1');
      await page.fill('#oinport', String(far.imapsPort));
      await page.selectOption('#oinsec', 'tls');
      await page.fill('#oouthost', '127.0.0.1');
      await page.fill('#ooutport', String(farSmtps));
      await page.selectOption('#ooutsec', 'tls');
    };
    await fill(FAR_PW);
    await page.getByRole('button', { name: 'Sign in and add' }).click();
    const problem = page.getByTestId('cert-problem');
    await problem.waitFor();
    assert.match(await problem.innerText(), /self-signed or from an unknown issuer/);
    assert.match(await problem.innerText(), /SHA-256 fingerprint: [0-9a-f]{64}/);

    // Trust it, sign in again: the account's INBOX shows.
    await page.fill('#opw', FAR_PW);
    await page.getByTestId('trust-cert').check();
    await page.getByRole('button', { name: 'Sign in and add' }).click();
    await page.getByTestId('outside-title').getByText(`${address} · INBOX`).waitFor();
    await page.getByRole('link', { name: subject }).waitFor();
    if (js) {
      // Live: new mail at the provider shows while the folder is open
      // (IMAP IDLE there, Server-Sent Events here).
      await page.waitForTimeout(1500);
      await smtpSend(far.smtpPort, 'ann@elsewhere.test', [address],
        `From: Ann <ann@elsewhere.test>\nTo: ${address}\nSubject: Second card\n\nAnd another.\n`);
      await page.getByTestId('new-mail').waitFor({ timeout: 20000 });
      await page.getByTestId('new-mail').getByRole('link', { name: 'Show it' }).click();
      await page.getByRole('link', { name: 'Second card' }).waitFor();
    }

    // The unified inbox has it, tagged with the account (the header cache
    // refreshes every second here).
    let row;
    for (let i = 0; ; i++) {
      await page.goto(`${home.base}/unified`);
      row = page.getByTestId('unified-messages').locator('tr', { hasText: subject });
      if (await row.count()) break;
      if (i > 50) throw new Error('the message never reached the unified inbox');
      await page.waitForTimeout(200);
    }
    assert.equal(await row.locator('.account').innerText(), address);
    await row.getByRole('link', { name: subject }).click();
    await page.getByTestId('outside-body').getByText('Wish you were here.').waitFor();

    // Reply from the outside address, through the provider.
    await page.getByTestId('outside-reply').click();
    await page.locator('#body').waitFor();
    assert.equal(await page.locator('#subject').inputValue(), `Re: ${subject}`);
    assert.match(await page.locator('#from option:checked').innerText(), new RegExp(address));
    await page.fill('#body', `Back soon. (${js ? 'js' : 'plain'})`);
    await page.getByRole('button', { name: 'Send' }).click();
    await page.getByTestId('sent-notice').waitFor();
    // The provider filed the copy in the account's Sent folder.
    const sent = imap(far.imapsPort, address, FAR_PW, 'Sent');
    assert.ok(sent.subjects.includes(`Re: ${subject}`), JSON.stringify(sent));
    assert.deepEqual(errors, []);
    await ctx.close();
  });
}

test('a password kept for the session only is asked for again after signing out', async () => {
  const address = 'lee@far.test';
  await smtpSend(far.smtpPort, 'ann@elsewhere.test', [address],
    `From: Ann <ann@elsewhere.test>\nTo: ${address}\nSubject: Just for now\n\nSession only.\n`);
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await signIn(page, home.base, 'alice@example.test', PW);
  await page.goto(`${home.base}/outside/add?address=${encodeURIComponent(address)}&protocol=imap&in_host=127.0.0.1&in_port=${far.imapsPort}&in_security=tls`);
  const add = async () => {
    await page.fill('#opw', FAR_PW);
    await page.locator('input[name=remember]').uncheck();
  };
  await add();
  await page.getByRole('button', { name: 'Sign in and add' }).click();
  await page.getByTestId('cert-problem').waitFor();
  await add();
  await page.getByTestId('trust-cert').check();
  await page.getByRole('button', { name: 'Sign in and add' }).click();
  await page.getByRole('link', { name: 'Just for now' }).waitFor();
  const boxUrl = page.url();

  // Signed out and in again: the password is gone with the session.
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await page.locator('input[name=address]').waitFor();
  await signIn(page, home.base, 'alice@example.test', PW);
  await page.goto(boxUrl);
  await page.locator('#upw').waitFor();
  assert.equal(await page.getByRole('link', { name: 'Just for now' }).count(), 0);
  await page.fill('#upw', FAR_PW);
  await page.getByRole('button', { name: 'Open' }).click();
  await page.getByRole('link', { name: 'Just for now' }).waitFor();
  // The list says the password is kept for the session only.
  await page.goto(`${home.base}/outside`);
  const item = page.getByTestId('outside-accounts').locator('li', { hasText: address });
  await item.getByText('password for this session only').waitFor();
  await ctx.close();
});
