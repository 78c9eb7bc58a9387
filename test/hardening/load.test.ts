import {execa, type ResultPromise} from 'execa';
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {createServer} from 'node:http';
import {join} from 'node:path';
import {after, before, describe, it} from 'node:test';
import {fileURLToPath} from 'node:url';
import {eventually, processExists, signedPost, startCallbackReceiver, startTestDaemon, tempDir, TEST_SECRET, writeTestConfig} from '../helpers.js';
import {useTally} from './tally.js';

const tally = useTally(import.meta.url);
const RUN_JS = fileURLToPath(new URL('../../bin/run.js', import.meta.url));

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
}

describe('load, against serve in its own process', () => {
  const directory = tempDir();
  let daemon: ResultPromise;
  let url = '';
  before(async () => {
    const port = 18_400 + (process.pid % 500);
    url = `http://127.0.0.1:${port}`;
    const config = writeTestConfig(directory, {BIND: `127.0.0.1:${port}`, SECRET_KEY: TEST_SECRET, MAX_RUNNING: 64, MAX_QUEUED: 1024});
    daemon = execa('node', ['--max-semi-space-size=2', RUN_JS, 'serve', '--config', config, '--no-dashboard'], {
      env: {RUNTIME_DIRECTORY: directory},
      stdin: 'ignore',
      stdout: 'ignore',
      stderr: 'pipe',
      reject: false,
    });
    await eventually(async () => ((await fetch(`${url}/`).catch(() => undefined))?.ok ? true : undefined), 10_000, 'serve to answer');
  });
  after(async () => {
    daemon.kill('SIGTERM');
    await daemon;
  });

  it('answers every one of 500 concurrent signed requests (200 or 429), with memory bounded, and serves normally after', {timeout: 120_000}, async () => {
    const pid = daemon.pid ?? 0;
    const rssBefore = rssMiB(pid);
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 20);
    const answers = await Promise.all(
      Array.from({length: 500}, async (_, index) => {
        tally.requestsSent++;
        const res = await signedPost(url, {command: `echo ${index}`});
        return {index, status: res.status, stdout: res.json?.data?.stdout as string | undefined};
      }),
    );
    clearInterval(sampler);
    const lost = answers.filter((answer) => answer.status !== 429 && !(answer.status === 200 && answer.stdout === `${answer.index}\n`));
    tally.lostResults += lost.length;
    assert.deepEqual(lost, []);
    assert.ok(peak - rssBefore < 100, `RSS grew by ${(peak - rssBefore).toFixed(1)} MiB under the burst`);
    tally.requestsSent++;
    assert.equal((await signedPost(url, {command: 'echo after'})).json.data.stdout, 'after\n');
    if (daemon.exitCode !== null) tally.crashes++;
    assert.equal(daemon.exitCode, null, 'serve is still running');
  });

  it('delivers 1,000 wait=false callbacks exactly once each, with the right output', {timeout: 180_000}, async () => {
    const receiver = await startCallbackReceiver();
    const count = 1000;
    tally.callbacksExpected += count;
    const acks = [];
    for (let batch = 0; batch < count; batch += 100) {
      acks.push(
        ...(await Promise.all(
          Array.from({length: 100}, (_, offset) => {
            tally.requestsSent++;
            return signedPost(url, {command: `echo job-${batch + offset}`, wait: false, callbackURL: receiver.url});
          }),
        )),
      );
    }
    assert.ok(acks.every((ack) => ack.status === 200), 'every request acknowledged');
    await receiver.waitFor(count, 120_000);
    // Anything more would come soon after the last: wait a moment to catch duplicates.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const outputs = receiver.received.map((callback) => (JSON.parse(callback.body) as {kwargs: {stdout: string}}).kwargs.stdout);
    tally.callbacksDelivered += new Set(outputs).size;
    const expected = Array.from({length: count}, (_, index) => `job-${index}\n`);
    assert.equal(outputs.length, count, 'no callback twice');
    assert.deepEqual([...outputs].sort(), [...expected].sort());
    const jobIds = new Set(receiver.received.map((callback) => callback.headers['x-sidecar-job-id']));
    assert.equal(jobIds.size, count);
  });
});

describe('callback receivers that misbehave', async () => {
  const {url, events} = await startTestDaemon({CALLBACK_RETRIES: 2, CALLBACK_TIMEOUT: 1});

  it('bounds retries and time for unreachable, slow, redirecting and failing receivers, without blocking other work', {timeout: 60_000}, async () => {
    const slow = createServer(() => {});
    const redirect = createServer((_req, res) => res.writeHead(302, {Location: 'http://127.0.0.1:1/'}).end());
    const failing = createServer((_req, res) => res.writeHead(500).end());
    const servers = [slow, redirect, failing];
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))));
    const address = (server: (typeof servers)[number]) => `http://127.0.0.1:${(server.address() as {port: number}).port}/cb`;
    const targets = ['http://127.0.0.1:1/unreachable', address(slow), address(redirect), address(failing)];
    try {
      const started = Date.now();
      const acks = await Promise.all(targets.map((callbackURL) => signedPost(url, {command: 'echo x', wait: false, callbackURL})));
      tally.faultsInjected += targets.length;
      assert.ok(acks.every((ack) => ack.status === 200));
      // Meanwhile other work goes on at once.
      tally.requestsSent += targets.length + 1;
      assert.equal((await signedPost(url, {command: 'echo meanwhile'})).json.data.stdout, 'meanwhile\n');
      assert.ok(Date.now() - started < 2000, 'other work was not held up');
      const jobIds = acks.map((ack) => ack.json.data.jobId as string);
      // Three attempts (CALLBACK_RETRIES 2), each within CALLBACK_TIMEOUT, then one final failure;
      // a redirect is final at once, as it is not followed.
      const finalFailures = await eventually(
        () => {
          const final = events.filter((event) => event.type === 'callback-failed' && jobIds.includes(event.jobId) && event.retryInMs === undefined);
          return final.length === targets.length ? final : undefined;
        },
        30_000,
        'a final callback-failed for every receiver',
      );
      const attemptOf = (jobId: string) => {
        const failure = finalFailures.find((event) => event.type === 'callback-failed' && event.jobId === jobId);
        return failure?.type === 'callback-failed' ? failure.attempt : 0;
      };
      assert.deepEqual(jobIds.map(attemptOf), [3, 3, 1, 3]);
      assert.ok(Date.now() - started < 20_000, `all given up within 20 s (${Date.now() - started} ms)`);
    } finally {
      for (const server of servers) server.closeAllConnections();
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    }
  });
});

describe('runaway commands', async () => {
  const {url} = await startTestDaemon();

  it('stops a command that runs away, with its whole process group, at its timeout', {timeout: 30_000}, async () => {
    const directory = tempDir();
    tally.faultsInjected++;
    tally.requestsSent++;
    const res = await signedPost(url, {command: `(while :; do :; done) & echo $! > ${directory}/spin; sleep 300 & echo $! > ${directory}/sleep; wait`, timeout: 1});
    assert.equal(res.json.data.timedOut, true);
    const pids = ['spin', 'sleep'].map((name) => Number(readFileSync(join(directory, name), 'utf8')));
    await eventually(() => (pids.some(processExists) ? undefined : true), 5000, 'the spinning loop and the sleep to be gone');
  });

  it('keeps its memory bounded while a command prints without end', {timeout: 60_000}, async () => {
    tally.faultsInjected++;
    tally.requestsSent++;
    const rssBefore = process.memoryUsage().rss;
    const res = await signedPost(url, {command: 'yes', timeout: 5});
    assert.equal(res.json.data.timedOut, true);
    assert.equal(res.json.data.truncated, true);
    assert.ok(process.memoryUsage().rss - rssBefore < 150 * 2 ** 20, 'RSS grew by less than 150 MiB');
  });
});
