import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import {copyFileSync, writeFileSync} from 'node:fs';
import {request} from 'node:https';
import {connect as tcpConnect} from 'node:net';
import {join} from 'node:path';
import {connect as tlsConnect} from 'node:tls';
import {fileURLToPath} from 'node:url';
import {describe, it} from 'node:test';
import {execa} from 'execa';
import {parseAllowFrom, sourceMatcher} from '../src/config/bind.js';
import {resolveSettings} from '../src/config/config.js';
import {signRequest} from '../src/protocol/signature.js';
import {eventually, signedPost, startServeProcess, startTestDaemon, tempDir, TEST_SECRET} from './helpers.js';

const CLIENT = fileURLToPath(new URL('clients/func_client.py', import.meta.url));
const RUN_JS = fileURLToPath(new URL('../bin/run.js', import.meta.url));

/** A private CA made for this test run, and server certificates it signs for 127.0.0.1. */
function makePki() {
  const directory = tempDir();
  const openssl = (...args: string[]) => execFileSync('openssl', args, {cwd: directory, stdio: 'pipe'});
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=dffs test CA');
  writeFileSync(join(directory, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  const issue = (name: string) => {
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=localhost');
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', 'san.ext');
    const fingerprint = execFileSync('openssl', ['x509', '-in', `${name}.pem`, '-noout', '-fingerprint', '-sha256'], {cwd: directory, encoding: 'utf8'}).split('=')[1].trim();
    return {cert: join(directory, `${name}.pem`), key: join(directory, `${name}.key`), fingerprint};
  };
  return {directory, ca: join(directory, 'ca.pem'), issue};
}

/** The certificate a new TLS connection is served with. */
function servedFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({host: '127.0.0.1', port, ca: execFileSync('cat', [ca])}, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.on('error', reject);
  });
}

function httpsPost(url: string, body: string, ca: string): Promise<{status: number; json: any}> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/shell`, {method: 'POST', ca: execFileSync('cat', [ca]), headers: {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...signRequest(TEST_SECRET, 'POST', '/shell', body)}}, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({status: res.statusCode ?? 0, json: JSON.parse(text)}));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('HTTPS listeners', () => {
  const pki = makePki();
  const first = pki.issue('first');
  const second = pki.issue('second');
  const live = {cert: join(pki.directory, 'live.pem'), key: join(pki.directory, 'live.key')};
  copyFileSync(first.cert, live.cert);
  copyFileSync(first.key, live.key);

  it('serves Func\'s own client (Python requests, verifying) given the private CA, and refuses to be trusted without it', async () => {
    const {url} = await startTestDaemon({BIND: 'https://127.0.0.1:0', TLS_CERT: live.cert, TLS_KEY: live.key});
    const bodyFile = join(pki.directory, 'body.json');
    writeFileSync(bodyFile, JSON.stringify({command: 'echo over-tls'}));
    const trusted = JSON.parse((await execa('python3', [CLIENT, url, TEST_SECRET, bodyFile], {env: {REQUESTS_CA_BUNDLE: pki.ca}})).stdout);
    assert.deepEqual([trusted.status, trusted.body.data.stdout], [200, 'over-tls\n']);
    const untrusted = JSON.parse((await execa('python3', [CLIENT, url, TEST_SECRET, bodyFile])).stdout);
    assert.equal(untrusted.error, 'SSLError');
  });

  it('is reached by dffs-ctl exec with --ca, which says what to do without it', async () => {
    const {url} = await startTestDaemon({BIND: 'https://127.0.0.1:0', TLS_CERT: live.cert, TLS_KEY: live.key});
    const ok = await execa(process.execPath, [RUN_JS, 'exec', '--url', url, '--ca', pki.ca, 'echo', 'signed'], {env: {DFFS_SECRET_KEY: TEST_SECRET}, reject: false});
    assert.deepEqual([ok.exitCode, ok.stdout], [0, 'signed']);
    const refused = await execa(process.execPath, [RUN_JS, 'exec', '--url', url, 'true'], {env: {DFFS_SECRET_KEY: TEST_SECRET}, reject: false});
    assert.equal(refused.exitCode, 69);
    assert.match(refused.stderr.replace(/\s*\n ›\s+/g, ' '), /\(UNABLE_TO_VERIFY_LEAF_SIGNATURE\): the certificate is not trusted; give its CA with --ca/);
  });

  it('takes a renewed certificate on SIGHUP: new connections get it, a command running meanwhile is answered', async () => {
    copyFileSync(first.cert, live.cert);
    copyFileSync(first.key, live.key);
    const port = 19_500 + (process.pid % 200);
    const {daemon, url, events} = await startServeProcess({BIND: `https://127.0.0.1:${port}`, TLS_CERT: live.cert, TLS_KEY: live.key}, port);
    assert.equal(await servedFingerprint(port, pki.ca), first.fingerprint);
    const running = httpsPost(url, JSON.stringify({command: 'sleep 1; echo finished'}), pki.ca);
    await eventually(() => events.find((event) => event.event === 'command-started'), 5000, 'the command to start');
    copyFileSync(second.cert, live.cert);
    copyFileSync(second.key, live.key);
    daemon.kill('SIGHUP');
    await eventually(() => events.find((event) => event.event === 'config-reloaded'), 5000, 'the reload');
    assert.equal(await servedFingerprint(port, pki.ca), second.fingerprint);
    const reply = await running;
    assert.deepEqual([reply.status, reply.json.data.stdout], [200, 'finished\n']);
    // A key that does not match the certificate: the reload is refused, the running pair stays.
    copyFileSync(first.key, live.key);
    daemon.kill('SIGHUP');
    const refused = await eventually(() => events.find((event) => event.event === 'reload-failed'), 5000, 'the reload to be refused');
    assert.match(String(refused.error), /TLS_CERT .* and TLS_KEY .* cannot be used: .*keeping the running configuration/);
    assert.equal(await servedFingerprint(port, pki.ca), second.fingerprint);
  });

  it('refuses a config with an https:// BIND and no certificate, or half of the pair', () => {
    assert.throws(() => resolveSettings({BIND: 'https://127.0.0.1:8099', SECRET_KEY: TEST_SECRET}, {}, 'c.json'), /c\.json: BIND has https:\/\/ addresses: set TLS_CERT and TLS_KEY/);
    assert.throws(() => resolveSettings({TLS_CERT: '/etc/ssl/a.pem'}, {}, 'c.json'), /TLS_CERT and TLS_KEY must be set together/);
    assert.throws(() => resolveSettings({TLS_CERT: 'a.pem', TLS_KEY: 'b.pem'}, {}, 'c.json'), /TLS_CERT must be the absolute path of a PEM file/);
    assert.throws(() => resolveSettings({BIND: 'https://127.0.0.1:8099,127.0.0.1:8099'}, {}, 'c.json'), /127\.0\.0\.1:8099" is listed twice/);
  });
});

describe('ALLOW_FROM', () => {
  it('gives connections from outside no place among MAX_CONNECTIONS, and no TLS handshake', async () => {
    const plain = await startTestDaemon({ALLOW_FROM: '127.0.0.1', MAX_CONNECTIONS: 2});
    const port = Number(new URL(plain.url).port);
    const outsiders = await Promise.all(Array.from({length: 6}, () => new Promise<import('node:net').Socket>((resolve) => {
      const socket = tcpConnect({host: '127.0.0.1', port, localAddress: '127.0.0.2'}, () => resolve(socket));
      // Closed by the daemon after a moment: expected.
      socket.on('error', () => {});
    })));
    const served = await signedPost(plain.url, {command: 'echo inside'});
    assert.equal(served.json?.data?.stdout, 'inside\n', served.raw);
    for (const socket of outsiders) socket.destroy();
    const pki = makePki();
    const pair = pki.issue('server');
    const secure = await startTestDaemon({BIND: 'https://127.0.0.1:0', TLS_CERT: pair.cert, TLS_KEY: pair.key, ALLOW_FROM: '127.0.0.1'});
    const tlsPort = Number(new URL(secure.url).port);
    const handshake = await new Promise<string>((resolve) => {
      const socket = tlsConnect({socket: tcpConnect({host: '127.0.0.1', port: tlsPort, localAddress: '127.0.0.2'}), rejectUnauthorized: false}, () => resolve('handshake done'));
      socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
    assert.notEqual(handshake, 'handshake done');
    assert.ok(secure.events.some((event) => event.type === 'request-refused' && event.reason === 'source-not-allowed' && event.remote === '127.0.0.2'));
  });

  it('reads addresses and networks, IPv4 and IPv6, and matches IPv4 clients seen through IPv6 sockets', () => {
    const allows = sourceMatcher(parseAllowFrom('127.0.0.0/8, ::1, 172.16.0.0/12, fd00::/8'));
    for (const address of ['127.0.0.1', '127.9.9.9', '::1', '172.17.0.2', '172.31.255.255', '::ffff:172.18.0.5', 'fd12::1']) assert.ok(allows(address), address);
    for (const address of ['10.0.0.1', '172.32.0.1', '::2', '::ffff:10.0.0.1', 'fe80::1', '', 'nonsense']) assert.ok(!allows(address), address);
    for (const bad of ['fe80::1%eth0', '', '10.0.0.0/33', '10.0.0/8', '::1/129', 'example.com', '10.0.0.1/8/8', '10.0.0.0/', '1,,2']) assert.throws(() => parseAllowFrom(bad), /is not an IPv4 or IPv6 address or network|the list is empty/, bad);
  });

  it('refuses a request from outside the list with 403 before its body is read, logs the address, and applies a new list on reload', async () => {
    const {daemon, url, configPath, events} = await startTestDaemon({ALLOW_FROM: '127.0.0.1'});
    const port = Number(new URL(url).port);
    /** Headers that promise a body which never comes: the answer can only be given before it is read. */
    const headersOnly = (localAddress: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = tcpConnect({host: '127.0.0.1', port, localAddress}, () => {
          socket.write(`POST /shell HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n${Object.entries(signRequest(TEST_SECRET, 'POST', '/shell', '{}')).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
        });
        let text = '';
        socket.on('data', (chunk) => {
          text += chunk;
          if (text.includes('}')) {
            socket.destroy();
            resolve(text);
          }
        });
        socket.on('error', reject);
      });
    const answer = await headersOnly('127.0.0.2');
    assert.match(answer, /^HTTP\/1\.1 403 /);
    assert.match(answer, /"reason":"source-not-allowed"/);
    assert.match(answer, /requests from 127\.0\.0\.2 are not allowed: the sidecar's ALLOW_FROM does not cover it/);
    assert.doesNotMatch(answer, new RegExp(configPath), 'an outsider is not told where the config is');
    assert.ok(events.some((event) => event.type === 'request-refused' && event.reason === 'source-not-allowed' && event.remote === '127.0.0.2'));
    writeFileSync(configPath, JSON.stringify({BIND: '127.0.0.1:0', SECRET_KEY: TEST_SECRET, ALLOW_FROM: '127.0.0.0/8'}));
    daemon.reload();
    const body = JSON.stringify({command: 'echo from-127.0.0.2'});
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = tcpConnect({host: '127.0.0.1', port, localAddress: '127.0.0.2'}, () => {
        socket.write(`POST /shell HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ${body.length}\r\n${Object.entries(signRequest(TEST_SECRET, 'POST', '/shell', body)).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`);
      });
      let text = '';
      socket.on('data', (chunk) => (text += chunk));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    assert.match(reply, /^HTTP\/1\.1 200 [\s\S]*"stdout":"from-127\.0\.0\.2\\n"/);
  });
});
