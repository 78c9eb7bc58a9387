import fc from 'fast-check';
import assert from 'node:assert/strict';
import {connect} from 'node:net';
import {describe, it} from 'node:test';
import {BadRequest, parseShellRequest} from '../../src/daemon/shell-request.js';
import {checkAuthHeaders, sign, signRequest} from '../../src/protocol/signature.js';
import {signedPost, startTestDaemon, TEST_SECRET} from '../helpers.js';
import {useTally} from './tally.js';

const tally = useTally(import.meta.url);
const RUNS = 400;

/** Sends raw bytes on a fresh connection and reads the status line and JSON body of the answer. */
function rawRequest(url: string, head: string, body: Buffer = Buffer.alloc(0)): Promise<{status: number; body: string}> {
  const {hostname, port} = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      resolve({status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), body: text.slice(text.indexOf('\r\n\r\n') + 4)});
    });
    // Not end(): a client that half-closes gets no answer from Node's HTTP server to a request it
    // answers asynchronously. Every request here says Connection: close instead.
    socket.write(Buffer.concat([Buffer.from(head), body]));
    tally.requestsSent++;
  });
}

function signedHead(url: string, body: Buffer, extra = '', options: {method?: string; path?: string; signPath?: string} = {}): string {
  const {host} = new URL(url);
  const headers = signRequest(TEST_SECRET, options.method ?? 'POST', options.signPath ?? '/shell', body);
  return [
    `${options.method ?? 'POST'} ${options.path ?? '/shell'} HTTP/1.1`,
    `Host: ${host}`,
    'Connection: close',
    'Content-Type: application/json',
    `Content-Length: ${body.length}`,
    ...Object.entries(headers).map(([key, value]) => `${key}: ${value}`),
    extra,
  ]
    .filter(Boolean)
    .join('\r\n')
    .concat('\r\n\r\n');
}

/** A JSON error answer: a 4xx with {ok: false, message}. */
function assertRefused(answer: {status: number; body: string}, statuses: number[]): void {
  assert.ok(statuses.includes(answer.status), `status ${answer.status}, expected one of ${statuses.join(', ')}: ${answer.body.slice(0, 200)}`);
  const json = JSON.parse(answer.body) as {ok: boolean; message: string};
  assert.equal(json.ok, false);
  assert.ok(json.message.length > 0);
}

describe('parsing never fails in an unplanned way', () => {
  it('parseShellRequest: any bytes give a request or a BadRequest naming the problem', () => {
    const jsonish = fc.oneof(
      fc.uint8Array({maxLength: 512}),
      fc.jsonValue().map((value) => Buffer.from(JSON.stringify(value) ?? 'null')),
      fc.record({command: fc.anything(), wait: fc.anything(), workdir: fc.anything(), envs: fc.anything(), callbackURL: fc.anything(), timeout: fc.anything()}, {requiredKeys: []}).map((value) => {
        try {
          return Buffer.from(JSON.stringify(value) ?? '{}');
        } catch {
          return Buffer.from('{}');
        }
      }),
      fc.nat({max: 5000}).map((depth) => Buffer.from(`${'['.repeat(depth)}${']'.repeat(depth)}`)),
      fc.string({unit: 'binary'}).map((text) => Buffer.from(JSON.stringify({command: text}))),
    );
    fc.assert(
      fc.property(jsonish, (body) => {
        tally.inputsTried++;
        try {
          const request = parseShellRequest(body, 3600);
          assert.equal(typeof request.command, 'string');
          assert.ok(!request.command.includes('\0'));
        } catch (error) {
          if (!(error instanceof BadRequest)) throw error;
          assert.ok(error.message.length > 0);
        }
      }),
      {numRuns: 5000},
    );
  });

  it('checkAuthHeaders: any header values give a verdict, never an exception', () => {
    const value = fc.oneof(fc.string(), fc.string({unit: 'binary', maxLength: 20_000}), fc.array(fc.string(), {maxLength: 3}), fc.constant(undefined));
    fc.assert(
      fc.property(fc.record({'x-auth-signature': value, 'x-auth-timestamp': value, 'x-auth-nonce': value}), (headers) => {
        tally.inputsTried++;
        const verdict = checkAuthHeaders(headers);
        if (!verdict.ok) assert.ok(verdict.message.length > 0);
      }),
      {numRuns: 5000},
    );
  });
});

describe('bad requests over HTTP: a clear 4xx, nothing runs, the daemon keeps serving', async () => {
  const {url, events} = await startTestDaemon({BODY_LIMIT: 64 * 1024});
  const commandsStarted = () => events.filter((event) => event.type === 'command-started').length;

  it('answers random bodies, signed or not, with 400 or 401', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({maxLength: 2048}), fc.boolean(), async (bytes, signed) => {
        tally.inputsTried++;
        const body = Buffer.from(bytes);
        const head = signed ? signedHead(url, body) : `POST /shell HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n`;
        assertRefused(await rawRequest(url, head, body), [400, 401]);
      }),
      {numRuns: RUNS},
    );
    assert.equal(commandsStarted(), 0);
  });

  it('refuses signed bodies of the wrong shape: types, NULs, invalid UTF-8, deep nesting, huge strings', async () => {
    const bodies = [
      '{"command": 1}',
      '{"command": "id", "wait": "yes"}',
      '{"command": "id\\u0000rm"}',
      '{"command": "id", "envs": ["NOEQUALS"]}',
      '{"command": "id", "envs": ["=empty"]}',
      '{"command": "id", "envs": {"LD_PRELOAD": "/tmp/x.so"}}',
      '{"command": "id", "envs": ["LD_LIBRARY_PATH=/tmp"]}',
      '{"command": "id", "envs": ["GCONV_PATH=/tmp"]}',
      '{"command": "id", "workdir": "relative/dir"}',
      '{"command": "id", "workdir": "/etc/hostname"}',
      '{"command": "id", "workdir": "/no/such/dir"}',
      '{"command": "id", "workdir": "/root"}',
      '{"command": "id", "callbackURL": "file:///etc/passwd"}',
      '{"command": "id", "callbackURL": "gopher://x"}',
      '{"command": "id", "callbackURL": "http://user:pw@host/"}',
      '{"command": "id", "timeout": -1}',
      '{"command": "id", "timeout": 1e300}',
      '{"command": "id", "extra": true}',
      `{"command": "${'x'.repeat(60_000)}", "wait": 1}`,
      `${'['.repeat(20_000)}${']'.repeat(20_000)}`,
      '{"command": "id"',
      '',
    ].map((text) => Buffer.from(text));
    bodies.push(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]));
    const before = commandsStarted();
    for (const body of bodies) {
      tally.inputsTried++;
      // /root is refused only where the daemon's user cannot enter it.
      const statuses = process.getuid?.() === 0 && body.includes('/root') ? [200, 400] : [400];
      const answer = await rawRequest(url, signedHead(url, body), body);
      if (answer.status !== 200) assertRefused(answer, statuses);
    }
    assert.equal(commandsStarted() - before, process.getuid?.() === 0 ? 1 : 0);
  });

  it('refuses every auth header missing, empty, oversized or malformed, and a signature for another path or method', async () => {
    const before = commandsStarted();
    const body = Buffer.from('{"command": "id"}');
    const good = signRequest(TEST_SECRET, 'POST', '/shell', body.toString());
    const now = String(Math.floor(Date.now() / 1000));
    const variants: Record<string, string>[] = [];
    for (const name of Object.keys(good)) {
      const without = {...good};
      delete without[name as keyof typeof good];
      variants.push(without, {...good, [name]: ''}, {...good, [name]: 'x'.repeat(9000)});
    }
    variants.push(
      {...good, 'X-Auth-Signature': good['X-Auth-Signature'].slice(1)},
      {...good, 'X-Auth-Signature': `${good['X-Auth-Signature']}00`},
      {...good, 'X-Auth-Signature': 'z'.repeat(40)},
      ...['0', '-1', '1e10', 'NaN', '12.5', ' 1', String(Number(now) - 100_000), String(Number(now) + 100_000)].map((timestamp) => ({
        ...good,
        'X-Auth-Timestamp': timestamp,
        'X-Auth-Signature': sign(TEST_SECRET, 'POST', '/shell', good['X-Auth-Nonce'], timestamp, body),
      })),
    );
    for (const headers of variants) {
      tally.inputsTried++;
      const head = `POST /shell HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: ${body.length}\r\n${Object.entries(headers)
        .map(([key, value]) => `${key}: ${value}`)
        .join('\r\n')}\r\n\r\n`;
      const answer = await rawRequest(url, head, body);
      assertRefused(answer, [400, 401, 431]);
    }
    tally.inputsTried += 3;
    assertRefused(await rawRequest(url, signedHead(url, body, '', {signPath: '/other'}), body), [401]);
    assertRefused(await rawRequest(url, signedHead(url, body, '', {method: 'PUT'}), body), [405]);
    assertRefused(await rawRequest(url, `${signedHead(url, body).replace(/\r\n\r\n$/, '')}\r\nX-Auth-Signature: ${'0'.repeat(40)}\r\n\r\n`, body), [400, 401]);
    assert.equal(commandsStarted() - before, 0);
  });

  it('refuses a command or variables too big for execve with a 400 (they could never start)', async () => {
    const {url: bigUrl, events: bigEvents} = await startTestDaemon({BODY_LIMIT: 4 * 1024 * 1024});
    const bodies = [
      {command: `echo ${'x'.repeat(200_000)}`},
      {command: 'true', envs: [`BIG=${'y'.repeat(200_000)}`]},
      {command: 'true', envs: Array.from({length: 40}, (_, index) => `V${index}=${'z'.repeat(100_000)}`)},
    ];
    for (const body of bodies) {
      tally.inputsTried++;
      tally.requestsSent++;
      const res = await signedPost(bigUrl, body);
      assert.equal(res.status, 400);
      assert.match(res.json.message, /bytes/);
    }
    assert.equal(bigEvents.filter((event) => event.type === 'command-started').length, 0);
    tally.requestsSent++;
    assert.equal((await signedPost(bigUrl, {command: 'true', envs: [`FINE=${'v'.repeat(100_000)}`]})).json.data.exitCode, 0);
  });

  it('answers 413 to an absurd Content-Length and to a chunked body over the limit', async () => {
    const before = commandsStarted();
    tally.inputsTried += 2;
    const head = signedHead(url, Buffer.alloc(0)).replace('Content-Length: 0', 'Content-Length: 99999999999999');
    assertRefused(await rawRequest(url, head), [413]);
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    const chunked = signedHead(url, Buffer.alloc(0)).replace('Content-Length: 0', 'Transfer-Encoding: chunked');
    const pieces = Array.from({length: 8}, () => Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]));
    assertRefused(await rawRequest(url, chunked, Buffer.concat([...pieces, Buffer.from('0\r\n\r\n')])), [413]);
    assert.equal(commandsStarted() - before, 0);
  });

  it('still serves a good request after all that', async () => {
    tally.requestsSent++;
    const res = await signedPost(url, {command: 'echo alive'});
    assert.equal(res.json.data.stdout, 'alive\n');
  });
});

describe('replay across bind addresses', async () => {
  const {daemon, events} = await startTestDaemon({BIND: '127.0.0.1:0,127.0.0.2:0'});

  it('refuses on every other address a request already answered on one', async () => {
    const [first, second] = daemon.listenerStatus();
    const body = Buffer.from('{"command": "echo once"}');
    const head = signedHead(`http://127.0.0.1:${first.port}`, body);
    tally.inputsTried += 3;
    assert.equal((await rawRequest(`http://127.0.0.1:${first.port}`, head, body)).status, 200);
    assertRefused(await rawRequest(`http://127.0.0.2:${second.port}`, head, body), [401]);
    assertRefused(await rawRequest(`http://127.0.0.1:${first.port}`, head, body), [401]);
    assert.equal(events.filter((event) => event.type === 'command-started').length, 1);
  });
});

describe('slow clients', async () => {
  const {url, events} = await startTestDaemon();

  it('times out connections that trickle their headers, and serves others meanwhile', {timeout: 30_000}, async () => {
    const {hostname, port} = new URL(url);
    const sockets = Array.from({length: 50}, () => connect(Number(port), hostname).on('error', () => {}));
    const closed = sockets.map((socket) => new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now()))));
    const started = Date.now();
    for (const socket of sockets) socket.write('POST /shell HTTP/1.1\r\nHost: x\r\n');
    const trickle = setInterval(() => sockets.forEach((socket) => socket.writable && socket.write('X-Slow: 1\r\n')), 1000);
    tally.faultsInjected += sockets.length;
    try {
      for (let i = 0; i < 5; i++) {
        tally.requestsSent++;
        assert.equal((await signedPost(url, {command: 'echo served'})).json.data.stdout, 'served\n');
      }
      const closedAt = await Promise.all(closed);
      // headersTimeout is 10 s, checked every second.
      assert.ok(closedAt.every((time) => time - started < 13_000), `every slow connection was closed within 13 s: ${Math.max(...closedAt) - started} ms`);
    } finally {
      clearInterval(trickle);
      sockets.forEach((socket) => socket.destroy());
    }
  });

  it('times out connections that trickle their body, and serves others meanwhile', {timeout: 45_000}, async () => {
    const {hostname, port} = new URL(url);
    const body = Buffer.from('{"command": "echo never"}');
    const head = signedHead(url, body);
    const sockets = Array.from({length: 20}, () => connect(Number(port), hostname).on('error', () => {}));
    const closed = sockets.map((socket) => new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now()))));
    const started = Date.now();
    for (const socket of sockets) socket.write(head);
    let sent = 0;
    const trickle = setInterval(() => {
      sent = Math.min(sent + 1, body.length - 1);
      for (const socket of sockets) if (socket.writable) socket.write(body.subarray(sent - 1, sent));
    }, 1000);
    tally.faultsInjected += sockets.length;
    try {
      tally.requestsSent++;
      assert.equal((await signedPost(url, {command: 'echo served'})).json.data.stdout, 'served\n');
      const closedAt = await Promise.all(closed);
      // requestTimeout is 30 s, checked every second.
      assert.ok(closedAt.every((time) => time - started < 33_000), `every slow body was cut off within 33 s: ${Math.max(...closedAt) - started} ms`);
      assert.equal(events.filter((event) => event.type === 'request-accepted' && event.command === 'echo never').length, 0);
    } finally {
      clearInterval(trickle);
      sockets.forEach((socket) => socket.destroy());
    }
  });
});
