// Starts a real `tern serve` on a free port with a fresh data dir, and a
// real headless Chromium. No mocks: the page talks to the real server.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createServer } from 'node:net';
import { chromium } from 'playwright-core';

const root = resolve(import.meta.dirname, '..');
export const TERN = process.env.TERN_BIN ?? join(root, 'target', 'debug', 'tern');
const SITE = process.env.TERN_SITE_ROOT ?? join(root, 'target', 'site');

function freePort() {
  return new Promise((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

export async function startTern() {
  const dir = mkdtempSync(join(tmpdir(), 'tern-e2e-'));
  const env = { ...process.env, TERN_DATA_DIR: dir, TERN_LOG: 'warn' };
  delete env.TERN_DATABASE__URL;
  const cli = (args, input) => {
    const r = spawnSync(TERN, args, { env, input, cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tern ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const port = await freePort();
  const child = spawn(TERN, ['serve'], {
    env: {
      ...env, TERN_WEB__LISTEN: `127.0.0.1:${port}`, TERN_WEB__SITE_ROOT: SITE,
      TERN_LISTENERS__SMTP: '', TERN_LISTENERS__SUBMISSION: '', TERN_LISTENERS__SMTPS: '',
      TERN_LISTENERS__POP3: '', TERN_LISTENERS__POP3S: '',
    },
    cwd: dir,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.status === 200) break;
    } catch {}
    if (i > 600) throw new Error('tern did not become healthy');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    cli,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}
