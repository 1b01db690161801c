// Signing in through the page, in Chromium, with and without JavaScript.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTern, launchChromium } from '../harness.mjs';

const PW = 'correct horse battery';
let tern, browser;

before(async () => {
  tern = await startTern();
  tern.cli(['domain', 'add', 'example.test']);
  tern.cli(['user', 'add', 'alice@example.test'], `${PW}\n`);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tern?.stop();
});

async function signIn(page, password) {
  await page.goto(`${tern.base}/login`);
  await page.fill('input[name=address]', 'alice@example.test');
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
}

test('hydrated page: wrong password refused, right one signs in', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const wasm = page.waitForResponse((r) => /\/pkg\/tern\.[0-9a-f]{16}\.wasm$/.test(r.url()));

  await page.goto(`${tern.base}/login`);
  assert.equal((await wasm).status(), 200, 'the wasm bundle is served');
  // Named by its content, so it may be cached for good.
  assert.equal((await wasm).headers()['cache-control'], 'public, max-age=31536000, immutable');
  await signIn(page, 'not the password');
  await page.getByRole('alert').waitFor();
  assert.equal(await page.getByRole('alert').innerText(), 'Wrong address or password.');
  assert.match(page.url(), /\/login\?error=invalid$/);

  await signIn(page, PW);
  await page.getByTestId('signed-in-as').waitFor();
  assert.equal(await page.getByTestId('signed-in-as').innerText(), 'Signed in as alice@example.test');
  assert.equal(new URL(page.url()).pathname, '/');
  const cookies = await ctx.cookies();
  const session = cookies.find((c) => c.name === 'tern_session');
  assert.ok(session, 'session cookie set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Lax');
  assert.deepEqual(errors, [], 'no script errors while hydrating');

  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await page.waitForURL(`${tern.base}/login`);
  // The front door: a signed-out visitor goes to the sign-in form, and
  // back to the page they asked for once signed in.
  await page.goto(`${tern.base}/folders`);
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.equal(new URL(page.url()).searchParams.get('next'), '/folders');
  await page.fill('input[name=address]', 'alice@example.test');
  await page.fill('input[name=password]', PW);
  await page.click('button[type=submit]');
  await page.waitForURL(`${tern.base}/folders`);
  await ctx.close();
});

test('JavaScript off: the same form works as plain HTML', async () => {
  const ctx = await browser.newContext({ javaScriptEnabled: false });
  const page = await ctx.newPage();
  await signIn(page, 'still not it');
  assert.equal(await page.getByRole('alert').innerText(), 'Wrong address or password.');
  await signIn(page, PW);
  assert.equal(await page.getByTestId('signed-in-as').innerText(), 'Signed in as alice@example.test');
  await ctx.close();
});
