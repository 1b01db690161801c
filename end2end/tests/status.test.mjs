// The public status page in Chromium: a destination whose server answers
// 421 shows on /status (JavaScript off and on) and in its feed, a signed-in
// user sees the banner and their own waiting message, an admin's note from
// /admin shows under the incident, and everything clears once the
// destination accepts mail (a second real tern takes over its port).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { startTern, launchChromium, signIn, freePort } from '../harness.mjs';

const PW = 'correct horse battery';
const ALICE = 'alice@example.test';
const ROOT = 'root@example.test';
const SHOTS = join(import.meta.dirname, '..', 'screenshots');
let tern, remote, farPort, busy, browser;

before(async () => {
  farPort = await freePort();
  // far.example's server, overloaded: 421 to every connection (RFC 5321
  // §3.8), until the test replaces it with a real one.
  busy = createServer((sock) => sock.end('421 4.7.0 far.example is too busy, try later\r\n'));
  await new Promise((ok) => busy.listen(farPort, '127.0.0.1', ok));
  tern = await startTern({
    TERN_RELAY__ENABLED: 'true',
    TERN_RELAY__ROUTES: `far.example=127.0.0.1:${farPort}`,
    TERN_QUEUE__POLL_INTERVAL_MS: '200',
    TERN_STATUS__CHECK_SECS: '1',
  });
  tern.cli(['domain', 'add', 'example.test']);
  tern.cli(['user', 'add', ALICE], `${PW}\n`);
  tern.cli(['user', 'add', ROOT, '--role', 'admin'], `${PW}\n`);
  browser = await launchChromium();
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await tern?.stop();
  await remote?.stop();
  busy?.close();
});

// Reloads `path` until `cond(page)` holds, for up to 30 s.
async function until(page, path, what, cond) {
  for (let i = 0; i < 120; i++) {
    await page.goto(`${tern.base}${path}`);
    if (await cond(page)) return;
    await page.waitForTimeout(250);
  }
  assert.fail(`${what}: not on ${path} within 30 s:\n${await page.content()}`);
}

const state = (page, service) => page.locator(`tr[data-service="${service}"]`).getAttribute('data-state');

test('status shows a stuck destination, the user is told, an admin adds a note, and it clears', async () => {
  const off = await browser.newContext({ javaScriptEnabled: false, colorScheme: 'dark', timezoneId: 'UTC' });
  const on = await browser.newContext({ javaScriptEnabled: true, colorScheme: 'light', timezoneId: 'UTC' });
  const pub = await off.newPage();

  await until(pub, '/status', 'the first check', async (p) =>
    (await p.getByTestId('overall').innerText()) === 'All services are operating normally.');
  assert.equal(await pub.getByTestId('no-incidents').innerText(), 'No incidents.');
  const res = await pub.request.get(`${tern.base}/status`);
  assert.equal(res.headers()['cache-control'], 'public, max-age=5');

  // Alice sends to far.example, whose server answers 421.
  const alice = await on.newPage();
  await signIn(alice, tern.base, ALICE, PW);
  await alice.goto(`${tern.base}/compose`);
  await alice.locator('#to').fill('friend@far.example');
  await alice.locator('#subject').fill('Figures for the status page');
  await alice.locator('#body').fill('Sent while far.example is away.');
  await alice.getByRole('button', { name: 'Send' }).click();
  await alice.waitForURL(/sent=1/);

  await until(pub, '/status', 'outbound degraded', async (p) => (await state(p, 'outbound')) === 'degraded');
  assert.equal(
    await pub.locator('tr[data-service="outbound"] td').last().innerText(),
    'Mail to far.example is being retried: the receiving server answers 421 4.7.0. Tern keeps it and tries again; nothing is lost.',
  );
  assert.equal(await pub.getByTestId('overall').innerText(), 'Some services are degraded.');
  const incident = pub.getByTestId('incident').first();
  assert.equal(await incident.getAttribute('data-service'), 'outbound');
  assert.equal(await incident.getAttribute('data-open'), 'true');
  await pub.screenshot({ path: join(SHOTS, 'status-dark.png'), fullPage: true });

  // The signed-in user: a banner, and her own message waiting.
  await alice.goto(`${tern.base}/mail?f=INBOX`);
  const banner = alice.getByTestId('service-banner');
  await banner.waitFor();
  assert.match(await banner.innerText(), /Outgoing delivery: Mail to far\.example is being retried/);
  assert.match(
    await alice.getByTestId('outbound-waiting').innerText(),
    /^1 message you sent is waiting to be delivered \(far\.example answers 421 4\.7\.0\); the next try is at \d{4}-\d\d-\d\d \d\d:\d\d\. Nothing is lost\.$/,
  );
  await alice.screenshot({ path: join(SHOTS, 'status-banner-light.png') });

  // An admin's note from /admin (a plain form: JavaScript off).
  const root = await off.newPage();
  await signIn(root, tern.base, ROOT, PW);
  await root.goto(`${tern.base}/admin`);
  await root.locator('#statusnote').fill('We are in touch with far.example\'s operators <and> will update here.');
  await root.getByRole('button', { name: 'Add to the status page' }).click();
  await root.waitForURL(/ok=/);
  assert.match(await root.content(), /Note added to the status page/);

  const lit = await on.newPage();
  await until(lit, '/status', 'the note under the incident', async (p) =>
    (await p.getByTestId('incident').first().getByTestId('note').count()) === 1);
  assert.match(
    await lit.getByTestId('incident').first().getByTestId('note').innerText(),
    /We are in touch with far\.example's operators <and> will update here\.$/,
  );
  await lit.screenshot({ path: join(SHOTS, 'status-light.png'), fullPage: true });

  const feed = await (await lit.request.get(`${tern.base}/status/feed.atom`)).text();
  assert.match(feed, /<title>Outgoing delivery: Degraded<\/title>/);
  assert.match(feed, /operators &lt;and&gt; will update here/);

  // far.example accepts mail now: retried, delivered, and the page clears.
  await new Promise((ok) => busy.close(ok));
  busy = null;
  remote = await startTern({ TERN_LISTENERS__SMTP: `127.0.0.1:${farPort}` });
  remote.cli(['domain', 'add', 'far.example']);
  remote.cli(['user', 'add', 'friend@far.example'], `${PW}\n`);
  tern.cli(['queue', 'retry', '--domain', 'far.example']);
  await until(pub, '/status', 'the recovery', async (p) => (await state(p, 'outbound')) === 'operating');
  assert.equal(await pub.getByTestId('overall').innerText(), 'All services are operating normally.');
  const closed = pub.getByTestId('incident').first();
  assert.equal(await closed.getAttribute('data-open'), 'false');
  assert.match(await closed.locator('h3').innerText(), /^Outgoing delivery: Degraded \(resolved\)$/);
  await alice.goto(`${tern.base}/mail?f=INBOX`);
  assert.equal(await alice.getByTestId('service-banner').count(), 0);
  assert.equal(await alice.getByTestId('outbound-waiting').count(), 0);
  const after = await (await lit.request.get(`${tern.base}/status/feed.atom`)).text();
  assert.match(after, /<title>Outgoing delivery: Degraded \(resolved\)<\/title>/);
  await off.close();
  await on.close();
});
