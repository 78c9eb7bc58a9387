import {execa} from 'execa';
import assert from 'node:assert/strict';
import {writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {before, describe, it} from 'node:test';
import {fileURLToPath} from 'node:url';
import {signRequest} from '../src/protocol/signature.js';
import {startTestDaemon, tempDir, TEST_SECRET} from './helpers.js';

const CLIENT = fileURLToPath(new URL('clients/func_client.py', import.meta.url));
const FIVE_MIB = 5 * 1024 * 1024;

/** The first Python with requests: the one on PATH, or Debian's (npm test installs python3-requests). */
async function pythonWithRequests(): Promise<string> {
  for (const python of ['python3', '/usr/bin/python3']) {
    if ((await execa(python, ['-c', 'import requests'], {reject: false})).exitCode === 0) return python;
  }
  throw new Error('no python3 with requests (Func\'s HTTP client): apt-get install python3-requests (npm test does, as root)');
}

describe('Func\'s real client (Python requests) and curl against abusive requests', async () => {
  const {url} = await startTestDaemon({BODY_LIMIT: 1024 * 1024});
  const directory = tempDir();
  let python = '';
  before(async () => {
    python = await pythonWithRequests();
  });

  const bodyFile = (name: string, command: string) => {
    const path = join(directory, name);
    writeFileSync(path, JSON.stringify({command, wait: true}));
    return path;
  };
  const funcClient = async (body: string, ...extra: string[]) =>
    JSON.parse((await execa(python, [CLIENT, url, TEST_SECRET, body, ...extra])).stdout) as {status?: number; body?: any; error?: string; message?: string};

  it('runs a command signed by the client Func uses', async () => {
    const reply = await funcClient(bodyFile('small.json', 'echo from-func'));
    assert.equal(reply.status, 200, JSON.stringify(reply));
    assert.equal(reply.body.data.stdout, 'from-func\n');
  });

  it('answers a signed 5 MiB body with a 413 that requests can read, not a broken pipe', async () => {
    const reply = await funcClient(bodyFile('big.json', `echo ${'x'.repeat(FIVE_MIB)}`));
    assert.equal(reply.status, 413, JSON.stringify(reply).slice(0, 300));
    assert.equal(reply.body.ok, false);
    assert.equal(reply.body.reason, 'body-too-large');
    assert.match(reply.body.message, /larger than BODY_LIMIT \(1048576 bytes\)/);
  });

  it('answers malformed auth headers with a 401 that requests can read, even with a 5 MiB body', async () => {
    const reply = await funcClient(join(directory, 'big.json'), '--bad-auth');
    assert.equal(reply.status, 401, JSON.stringify(reply).slice(0, 300));
    assert.equal(reply.body.reason, 'malformed-header');
  });

  it('tells curl 413 at once when it asks Expect: 100-continue for a 5 MiB body, with no 100 Continue', async () => {
    const body = join(directory, 'big.json');
    const {readFileSync} = await import('node:fs');
    const headers = signRequest(TEST_SECRET, 'POST', '/shell', readFileSync(body));
    const curl = await execa('curl', ['-sS', '-v', '-H', 'Content-Type: application/json', '-H', 'Expect: 100-continue',
      ...Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]),
      '--data-binary', `@${body}`, `${url}/shell`], {reject: false});
    assert.equal(curl.exitCode, 0, curl.stderr.slice(-500));
    assert.doesNotMatch(curl.stderr, /< HTTP\/1\.1 100/);
    assert.match(curl.stderr, /< HTTP\/1\.1 413/);
    assert.equal(JSON.parse(curl.stdout).reason, 'body-too-large');
  });

  it('tells curl 401 at once for malformed auth headers, before it sends the body', async () => {
    const curl = await execa('curl', ['-sS', '-v', '-H', 'Expect: 100-continue', '-H', 'X-Auth-Nonce: short', '-H', 'X-Auth-Timestamp: 1', '-H', 'X-Auth-Signature: x',
      '--data-binary', `@${join(directory, 'big.json')}`, `${url}/shell`], {reject: false});
    assert.equal(curl.exitCode, 0, curl.stderr.slice(-500));
    assert.doesNotMatch(curl.stderr, /< HTTP\/1\.1 100/);
    assert.match(curl.stderr, /< HTTP\/1\.1 401/);
    assert.equal(JSON.parse(curl.stdout).reason, 'malformed-header');
  });

  it('tells curl to go on with a good request that asks Expect: 100-continue, and runs it', async () => {
    const body = JSON.stringify({command: `echo ${'y'.repeat(2000)} | wc -c`});
    const headers = signRequest(TEST_SECRET, 'POST', '/shell', body);
    const curl = await execa('curl', ['-sS', '-v', '-H', 'Content-Type: application/json', '-H', 'Expect: 100-continue',
      ...Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]),
      '--data-binary', body, `${url}/shell`], {reject: false});
    assert.match(curl.stderr, /< HTTP\/1\.1 100 Continue/);
    assert.equal(JSON.parse(curl.stdout).data.stdout, '2001\n');
  });
});
