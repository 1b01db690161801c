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

export function freePort() {
  return new Promise((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

export async function startTern(extraEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tern-e2e-'));
  const env = { ...process.env, TERN_DATA_DIR: dir, TERN_LOG: 'warn' };
  delete env.TERN_DATABASE__URL;
  const cli = (args, input) => {
    const r = spawnSync(TERN, args, { env, input, cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tern ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const port = await freePort();
  const smtpPort = await freePort();
  const imapsPort = await freePort();
  const serveEnv = {
    ...env, TERN_WEB__LISTEN: `127.0.0.1:${port}`, TERN_WEB__SITE_ROOT: SITE,
    TERN_LISTENERS__SMTP: `127.0.0.1:${smtpPort}`, TERN_LISTENERS__SUBMISSION: '',
    TERN_LISTENERS__SMTPS: '', TERN_LISTENERS__POP3: '', TERN_LISTENERS__POP3S: '', TERN_LISTENERS__MANAGESIEVE: '',
    TERN_LISTENERS__IMAP: '', TERN_LISTENERS__IMAPS: `127.0.0.1:${imapsPort}`,
    // Nothing leaves 127.0.0.1: outbound delivery is off.
    TERN_RELAY__ENABLED: 'false',
    // The sender checks on port 25 would ask real DNS.
    TERN_SMTP__SENDER_CHECKS: 'false',
    // Webmail sends go at once (the undo window is tested on its own).
    TERN_WEB__UNDO_SEND_SECS: '0',
    ...extraEnv,
  };
  const base = `http://127.0.0.1:${port}`;
  const launch = async () => {
    const c = spawn(TERN, ['serve'], { env: serveEnv, cwd: dir, stdio: ['ignore', 'inherit', 'inherit'] });
    for (let i = 0; ; i++) {
      try {
        const r = await fetch(`${base}/healthz`);
        if (r.status === 200) break;
      } catch {}
      if (i > 600) throw new Error('tern did not become healthy');
      await new Promise((r) => setTimeout(r, 100));
    }
    return c;
  };
  let child = await launch();
  const halt = async () => {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  };
  return {
    base,
    cli,
    smtpPort,
    imapsPort,
    dir,
    // Stops the server (SIGTERM) and starts it again on the same data dir
    // and ports: what survives is what was stored.
    async restart() {
      await halt();
      child = await launch();
    },
    async stop() {
      await halt();
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

// Delivers a message over real SMTP (port 25 style, no auth), the way
// another mail server would. Returns the server's final reply line.
export async function smtpSend(port, from, rcpts, message) {
  const { connect } = await import('node:net');
  const sock = connect(port, '127.0.0.1');
  let buf = '';
  const replies = [];
  let waiting = null;
  sock.on('data', (d) => {
    buf += d.toString('latin1');
    let m;
    while ((m = buf.match(/^(\d{3})([ -])(.*)\r\n/))) {
      buf = buf.slice(m[0].length);
      if (m[2] === ' ') {
        replies.push(m[0].trim());
        if (waiting) { const w = waiting; waiting = null; w(); }
      }
    }
  });
  const reply = async () => {
    while (!replies.length) await new Promise((r) => (waiting = r));
    return replies.shift();
  };
  const cmd = async (line, expect) => {
    if (line !== null) sock.write(line + '\r\n');
    const r = await reply();
    if (!r.startsWith(expect)) throw new Error(`SMTP ${line}: ${r}`);
    return r;
  };
  await cmd(null, '220');
  await cmd('EHLO e2e.example', '250');
  await cmd(`MAIL FROM:<${from}>`, '250');
  for (const r of rcpts) await cmd(`RCPT TO:<${r}>`, '250');
  await cmd('DATA', '354');
  const body = message.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
  sock.write(body.endsWith('\r\n') ? body : body + '\r\n');
  const last = await cmd('.', '250');
  await cmd('QUIT', '221');
  sock.end();
  return last;
}

// Runs end2end/imap.py (Python's imaplib over implicit TLS) and returns
// its JSON answer: an independent client's view of a mailbox.
export function imap(port, user, password, ...args) {
  const r = spawnSync('python3', [join(root, 'end2end', 'imap.py'), String(port), user, password, ...args], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`imap.py ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export async function signIn(page, base, address, password) {
  await page.goto(`${base}/login`);
  await page.fill('input[name=address]', address);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  // Attached, not visible: phones hide it to save room.
  await page.getByTestId('signed-in-as').waitFor({ state: 'attached' });
}

// Opens an SMTP transaction up to RCPT and returns the RCPT reply line,
// for checking refusals (a catchall set to reject, say).
export async function smtpRcpt(port, from, rcpt) {
  const { connect } = await import('node:net');
  const sock = connect(port, '127.0.0.1');
  let buf = '';
  const lines = [];
  let wake = null;
  sock.on('data', (d) => {
    buf += d.toString('latin1');
    let i;
    while ((i = buf.indexOf('\r\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (/^\d{3} /.test(l)) { lines.push(l); if (wake) { const w = wake; wake = null; w(); } }
    }
  });
  const next = async () => { while (!lines.length) await new Promise((r) => (wake = r)); return lines.shift(); };
  await next();
  sock.write('EHLO e2e.example\r\n'); await next();
  sock.write(`MAIL FROM:<${from}>\r\n`); await next();
  sock.write(`RCPT TO:<${rcpt}>\r\n`);
  const r = await next();
  sock.write('QUIT\r\n'); await next();
  sock.end();
  return r;
}

// A DNS server on 127.0.0.1 (UDP) answering TXT questions from `txt`
// ({ name: text }) and NXDOMAIN for every other name: the sender checks
// on port 25 run their real lookups without leaving the machine.
export async function startFakeDns(txt) {
  const { createSocket } = await import('node:dgram');
  const records = Object.fromEntries(Object.entries(txt).map(([k, v]) => [k.toLowerCase(), v]));
  const sock = createSocket('udp4');
  sock.on('message', (q, from) => {
    if (q.length < 12) return;
    let i = 12;
    const labels = [];
    while (i < q.length && q[i] !== 0) {
      labels.push(q.subarray(i + 1, i + 1 + q[i]).toString('latin1'));
      i += 1 + q[i];
    }
    i += 1;
    if (i + 4 > q.length) return;
    const qtype = q.readUInt16BE(i);
    const question = q.subarray(12, i + 4);
    const name = labels.join('.').toLowerCase();
    const known = name in records;
    let answer = Buffer.alloc(0);
    if (known && qtype === 16) {
      const text = Buffer.from(records[name]);
      const strings = [];
      for (let j = 0; j < text.length; j += 255) {
        const c = text.subarray(j, j + 255);
        strings.push(Buffer.from([c.length]), c);
      }
      const rdata = Buffer.concat(strings);
      const head = Buffer.alloc(12);
      head.writeUInt16BE(0xc00c, 0);
      head.writeUInt16BE(16, 2);
      head.writeUInt16BE(1, 4);
      head.writeUInt32BE(60, 6);
      head.writeUInt16BE(rdata.length, 10);
      answer = Buffer.concat([head, rdata]);
    }
    const header = Buffer.alloc(12);
    header.writeUInt16BE(q.readUInt16BE(0), 0);
    header.writeUInt16BE(0x8180 | (q.readUInt16BE(2) & 0x0100) | (known ? 0 : 3), 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answer.length ? 1 : 0, 6);
    sock.send(Buffer.concat([header, question, answer]), from.port, from.address);
  });
  await new Promise((ok) => sock.bind(0, '127.0.0.1', ok));
  return { addr: `127.0.0.1:${sock.address().port}`, close: () => sock.close() };
}
