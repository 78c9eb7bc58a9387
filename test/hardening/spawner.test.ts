import {execa} from 'execa';
import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {fileURLToPath} from 'node:url';
import type {StoredConfig} from '../../src/config/config.js';
import {startServeProcess, statusMiB, TEST_SECRET} from '../helpers.js';
import {signRequest} from '../../src/protocol/signature.js';
import {useTally} from './tally.js';

const tally = useTally(import.meta.url);
const RACER = fileURLToPath(new URL('../clients/signal-racer.py', import.meta.url));
const MiB = 1024 * 1024;

/** `serve` in its own process on this file's ports; `shell` wraps its start (for closed descriptors). */
function startServe(config: StoredConfig, portOffset: number, shell?: string, detached?: boolean) {
  return startServeProcess(config, 19_100 + (process.pid % 50) * 4 + portOffset, shell, detached);
}

async function post(url: string, body: unknown) {
  const text = JSON.stringify(body);
  const res = await fetch(`${url}/shell`, {method: 'POST', headers: {'Content-Type': 'application/json', ...signRequest(TEST_SECRET, 'POST', '/shell', text)}, body: text});
  return {status: res.status, json: (await res.json()) as any};
}

describe('the spawner under signals sent to every new process', () => {
  it('5,000 commands while a racer sends SIGHUP, SIGTERM and SIGINT to each new child: no reload, no stop, every request answered', {timeout: 300_000}, async () => {
    const {url, events, pid} = await startServe({MAX_QUEUED: 10_000}, 0);
    const racer = execa('python3', [RACER, String(pid), '600'], {reject: false});
    const total = 5000;
    let next = 0;
    const answers: number[] = [];
    await Promise.all(
      Array.from({length: 16}, async () => {
        while (next < total) {
          next++;
          tally.requestsSent++;
          const reply = await post(url, {command: 'true'});
          answers.push(reply.status);
        }
      }),
    );
    racer.kill('SIGTERM');
    const signalsSent = Number((await racer).stdout || 0);
    const count = (type: string) => events.filter((event) => event.event === type).length;
    console.log(`  ${total} commands, ${signalsSent} signals sent to new children; reloads ${count('config-reloaded')}, stops ${count('stopping')}, answers ${JSON.stringify(Object.fromEntries([...new Set(answers)].map((status) => [status, answers.filter((s) => s === status).length])))}`);
    assert.equal(answers.length, total);
    assert.ok(answers.every((status) => status === 200), 'every request answered 200');
    assert.ok(signalsSent > 100, `the racer hit only ${signalsSent} children`);
    assert.equal(count('config-reloaded'), 0);
    assert.equal(count('stopping'), 0);
    tally.lostResults += total - answers.length;
  });
});

describe('output beyond what the daemon can hold', () => {
  it('answers 600 MB of output under a 700 MiB OUTPUT_LIMIT, truncated at OUTPUT_BUDGET (64 MiB), with memory bounded by it', {timeout: 180_000}, async () => {
    const budget = 64 * MiB;
    const {daemon, url, pid} = await startServe({OUTPUT_LIMIT: 700 * MiB}, 1);
    const before = statusMiB(pid, 'VmRSS');
    const text = JSON.stringify({command: 'head -c 600000000 /dev/zero'});
    const res = await fetch(`${url}/shell`, {method: 'POST', headers: {'Content-Type': 'application/json', ...signRequest(TEST_SECRET, 'POST', '/shell', text)}, body: text});
    assert.equal(res.status, 200);
    // The reply is larger than any string: read it as it comes, keeping only its end.
    let bytes = 0;
    let tail = '';
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      tail = (tail + Buffer.from(chunk).toString('latin1')).slice(-500);
    }
    const outcome = JSON.parse(`{${tail.slice(tail.indexOf('"exitCode"'))}`.replace(/}}$/, '}'));
    const peak = statusMiB(pid, 'VmHWM');
    console.log(`  reply ${(bytes / MiB).toFixed(0)} MiB, ${JSON.stringify(outcome)}; RSS ${before.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB`);
    assert.deepEqual([outcome.exitCode, outcome.truncated], [0, true]);
    // Each kept NUL is written as \u0000: six bytes of reply per byte kept.
    assert.ok(bytes >= budget * 6 && bytes < budget * 6 + MiB, `reply of ${bytes} bytes`);
    // The kept bytes, the text made of them, the reply written from it, and garbage not yet collected
    // (measured: 296 MiB over the start here, 299 on CI: close to 5 × the budget); 600 MB held would be twice this.
    assert.ok(peak < before + 6 * (budget / MiB), `peak RSS ${peak.toFixed(0)} MiB`);
    assert.equal((await post(url, {command: 'echo still up'})).json.data.stdout, 'still up\n');
    assert.equal(daemon.exitCode, null);
    if (daemon.exitCode !== null) tally.crashes++;
  });
});

describe('a daemon started with its standard error closed', () => {
  it('still returns a command\'s stderr', async () => {
    const {url} = await startServe({}, 2, 'exec "$@" 2>&-');
    const reply = await post(url, {command: 'echo to-out; echo to-err >&2'});
    assert.deepEqual([reply.json.data.stdout, reply.json.data.stderr], ['to-out\n', 'to-err\n']);
  });
});

describe('Ctrl-C on a serve in a terminal (SIGINT to its whole process group)', () => {
  it('drains: the running command finishes and is answered, as the helper is not in that group', async () => {
    const {daemon, url, events} = await startServe({}, 3, undefined, true);
    const running = post(url, {command: 'sleep 1; echo drained'});
    await new Promise((resolve) => setTimeout(resolve, 300));
    process.kill(-(daemon.pid as number), 'SIGINT');
    const reply = await running;
    assert.deepEqual([reply.json.data.stdout, reply.json.data.exitCode, reply.json.data.ended], ['drained\n', 0, undefined]);
    await daemon;
    assert.ok(events.some((event) => event.event === 'stopping'));
  });
});
