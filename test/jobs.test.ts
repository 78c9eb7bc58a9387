import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {join} from 'node:path';
import {describe, it} from 'node:test';
import {cancelJob, jobsRequest, listJobs, readOutput, showJob} from '../src/client/jobs-client.js';
import type {SidecarTarget} from '../src/client/target.js';
import {sign} from '../src/protocol/signature.js';
import {eventually, processExists, signedPost, startCallbackReceiver, startTestDaemon, tempDir, TEST_SECRET} from './helpers.js';

const NARROW_SECRET = 'narrow-secret-0123456789-abcdefg';
const OTHER_SECRET = 'other-secret-0123456789-abcdefgh';
const KEYS = {narrow: {secret: NARROW_SECRET, allow: ['echo [a-z]+', 'sleep [0-9]+']}, other: {secret: OTHER_SECRET, allow: ['echo [a-z]+']}};

function target(url: string, secretKey = TEST_SECRET): SidecarTarget {
  return {baseUrl: url, secretKey};
}

async function start(url: string, command: string, secret = TEST_SECRET, extra: Record<string, unknown> = {}): Promise<string> {
  const reply = await signedPost(url, {command, wait: false, ...extra}, {secret});
  assert.equal(reply.status, 200, reply.raw);
  return reply.json.data.jobId as string;
}

describe('jobs: records, output and cancel over HTTP', () => {
  it('keeps a record of every command, with its output, and lists them newest first', async () => {
    const {url} = await startTestDaemon();
    const id = await start(url, 'echo out; echo err >&2; exit 3');
    const record = await eventually(async () => {
      const shown = await showJob(target(url), id);
      return shown.state === 'running' || shown.state === 'queued' ? undefined : shown;
    });
    assert.equal(record.state, 'failed');
    assert.equal(record.exitCode, 3);
    assert.equal(record.key, 'default');
    assert.equal(record.stdoutBytes, 4);
    const chunks: string[] = [];
    const final = await readOutput(target(url), id, false, {data: (stream, text) => chunks.push(`${stream}:${text}`)});
    assert.deepEqual(chunks, ['stdout:out\n', 'stderr:err\n']);
    assert.equal(final.state, 'failed');
    const second = await start(url, 'true');
    const listed = await eventually(async () => {
      const jobs = await listJobs(target(url), {state: ['succeeded', 'failed']});
      return jobs.length === 2 ? jobs : undefined;
    });
    assert.deepEqual(listed.map((job) => job.id), [second, id]);
    assert.deepEqual((await listJobs(target(url), {state: ['failed']})).map((job) => job.id), [id]);
  });

  it('streams output as it is printed to a follower who joins late: what is kept, then the rest', async () => {
    const {url} = await startTestDaemon();
    const id = await start(url, 'for i in 1 2 3; do echo "line $i $(date +%s%3N)"; sleep 0.5; done');
    await new Promise((resolve) => setTimeout(resolve, 700));
    const joined = Date.now();
    const lines: {text: string; at: number}[] = [];
    const result = await readOutput(target(url), id, true, {data: (_stream, text) => lines.push(...text.trimEnd().split('\n').map((line) => ({text: line, at: Date.now()})))});
    assert.equal(result.state, 'succeeded');
    assert.deepEqual(lines.map((line) => line.text.split(' ').slice(0, 2).join(' ')), ['line 1', 'line 2', 'line 3']);
    for (const {text, at} of lines) {
      const printed = Number(text.split(' ')[2]);
      // Printed before the follower joined: given at once; after: as it was printed.
      const late = at - Math.max(printed, joined);
      assert.ok(late < 300, `${text} reached the follower ${late} ms after it was printed or kept`);
    }
    assert.ok(Number(lines[2].text.split(' ')[2]) > joined, 'the last line was printed after the follower joined');
  });

  it('cancels a running job and its child that ignores SIGTERM: record, reply and one callback say cancelled', async () => {
    const receiver = await startCallbackReceiver();
    const {url, events} = await startTestDaemon({KILL_GRACE: 1});
    const pidFile = join(tempDir(), 'child.pid');
    const command = `sh -c 'trap "" TERM; echo $$ > ${pidFile}; exec sleep 60' & echo started; wait`;
    const id = await start(url, command, TEST_SECRET, {callbackURL: receiver.url});
    const child = await eventually(() => {
      try {
        return Number(readFileSync(pidFile, 'utf8')) || undefined;
      } catch {
        return undefined;
      }
    });
    const cancelled = await cancelJob(target(url), id);
    assert.equal(cancelled.id, id);
    const record = await eventually(async () => {
      const shown = await showJob(target(url), id);
      return shown.state === 'running' ? undefined : shown;
    });
    assert.equal(record.state, 'cancelled');
    await eventually(() => (processExists(child) ? undefined : true), 5000, 'the child that ignores SIGTERM to end');
    const [callback] = await receiver.waitFor(1);
    assert.equal(callback.headers['x-sidecar-ended'], 'cancelled');
    assert.match(JSON.parse(callback.body).kwargs.stdout, /started/);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(receiver.received.length, 1, 'the callback came once');
    assert.ok(events.some((event) => event.type === 'job-cancel' && event.jobId === id));
    const again = await jobsRequest(target(url), 'DELETE', `/jobs/${id}`);
    assert.deepEqual([again.status, again.body.reason], [409, 'job-finished']);
  });

  it('cancels a queued job before it starts, and answers its waiting request', async () => {
    const {url} = await startTestDaemon({MAX_RUNNING: 1});
    const first = await start(url, 'sleep 5');
    const waiting = signedPost(url, {command: 'echo never'});
    const queued = await eventually(async () => (await listJobs(target(url), {state: ['queued']}))[0]);
    await cancelJob(target(url), queued.id);
    const reply = await waiting;
    assert.equal(reply.json.data.ended, 'cancelled');
    assert.equal(reply.json.data.stdout, '');
    assert.equal((await showJob(target(url), queued.id)).state, 'cancelled');
    await cancelJob(target(url), first);
  });

  it('refuses a bad signature, a replay, a stale timestamp and another narrow key on every job endpoint', async () => {
    const {url} = await startTestDaemon({KEYS});
    const mine = await start(url, 'sleep 3', NARROW_SECRET);
    for (const [method, path] of [['GET', '/jobs'], ['GET', `/jobs/${mine}`], ['GET', `/jobs/${mine}/output`], ['DELETE', `/jobs/${mine}`]] as const) {
      const call = (headers: Record<string, string>) => fetch(`${url}${path}`, {method, headers}).then(async (res) => ({status: res.status, body: (await res.json()) as {reason: string}}));
      const now = String(Math.floor(Date.now() / 1000));
      const nonce = `n${Math.random().toString(16).slice(2)}0123456789`;
      const good = {'X-Auth-Nonce': nonce, 'X-Auth-Timestamp': now, 'X-Auth-Signature': sign(OTHER_SECRET, method, path, nonce, now, '')};
      const bad = await call({...good, 'X-Auth-Signature': sign('wrong-secret-0123456789', method, path, nonce, now, '')});
      assert.deepEqual([bad.status, bad.body.reason], [401, 'bad-signature'], `${method} ${path}`);
      const stale = String(Math.floor(Date.now() / 1000) - 3600);
      const old = await call({...good, 'X-Auth-Timestamp': stale, 'X-Auth-Signature': sign(OTHER_SECRET, method, path, nonce, stale, '')});
      assert.deepEqual([old.status, old.body.reason], [401, 'stale-timestamp'], `${method} ${path}`);
      const first = await call(good);
      if (path === '/jobs') assert.equal(first.status, 200);
      else assert.deepEqual([first.status, first.body.reason], [404, 'job-not-found'], `another narrow key's job, ${method} ${path}`);
      const replayed = await call(good);
      assert.deepEqual([replayed.status, replayed.body.reason], [401, 'replayed-nonce'], `${method} ${path}`);
      // The signature covers the method: a signed GET is no DELETE.
      const otherMethod = await fetch(`${url}${path}`, {method: method === 'GET' ? 'DELETE' : 'GET', headers: {...good, 'X-Auth-Nonce': `${nonce}x`, 'X-Auth-Signature': sign(OTHER_SECRET, method, path, `${nonce}x`, now, '')}});
      assert.ok([401, 405].includes(otherMethod.status), `${method} ${path} signed, sent as another method: ${otherMethod.status}`);
    }
    assert.deepEqual((await listJobs(target(url, OTHER_SECRET))).map((job) => job.id), [], 'a narrow key lists only its own jobs');
    assert.deepEqual((await listJobs(target(url, NARROW_SECRET))).map((job) => job.id), [mine]);
    assert.deepEqual((await listJobs(target(url))).map((job) => job.id), [mine], 'a key that may run anything sees every job');
    assert.equal((await cancelJob(target(url, NARROW_SECRET), mine)).id, mine);
  });
});

describe('jobs under abuse', () => {
  it('keeps no record of a request refused as busy', async () => {
    const {url, daemon} = await startTestDaemon({MAX_RUNNING: 1, MAX_QUEUED: 0});
    const first = await start(url, 'sleep 5');
    for (let index = 0; index < 20; index++) {
      const refused = await signedPost(url, {command: 'echo refused', wait: false});
      assert.equal(refused.status, 429);
    }
    assert.equal(daemon.jobs.size, 1);
    assert.deepEqual((await listJobs(target(url))).map((job) => job.id), [first]);
    await cancelJob(target(url), first);
  });

  it('gives a late follower all the running job holds, not only its head and tail', async () => {
    const {url} = await startTestDaemon();
    // 1.3 MB at once, then a pause: the follower joins in the pause.
    const id = await start(url, 'seq 1 200000; sleep 1; echo done');
    await new Promise((resolve) => setTimeout(resolve, 500));
    let text = '';
    let skipped = 0;
    const result = await readOutput(target(url), id, true, {data: (_stream, data) => (text += data), skipped: (_stream, bytes) => (skipped += bytes)});
    assert.equal(result.state, 'succeeded');
    assert.equal(skipped, 0);
    assert.equal(text, `${Array.from({length: 200000}, (_, index) => index + 1).join('\n')}\ndone\n`);
  });

  it('keeps a character split between pieces whole for a follower who joins between them', async () => {
    const {url} = await startTestDaemon();
    // "é" is two bytes: the first printed, then, after a pause, the second.
    const id = await start(url, "printf 'caf\\303'; sleep 1; printf '\\251!\\n'");
    await new Promise((resolve) => setTimeout(resolve, 500));
    let text = '';
    await readOutput(target(url), id, true, {data: (_stream, data) => (text += data)});
    assert.equal(text, 'café!\n');
  });

  it('gives a plain reader and a follower megabytes of a running job whole, and keeps answering others meanwhile', async () => {
    const {url} = await startTestDaemon();
    // 5 MB of control characters (six bytes each in JSON), then a pause: the readers come in the pause.
    const id = await start(url, "head -c 5000000 /dev/zero | tr '\\0' '\\1'; seq 1 100000 >&2; sleep 2; echo end");
    await eventually(async () => ((await showJob(target(url), id)).stderrBytes >= 588895 ? true : undefined), 20_000, 'the output held');
    const read = (follow: boolean) => {
      const got = {stdout: 0, stderr: 0, skipped: 0};
      return readOutput(target(url), id, follow, {data: (stream, text) => (got[stream] += text.length), skipped: () => got.skipped++}).then((result) => ({got, result}));
    };
    const readers = [...Array.from({length: 4}, () => read(false)), ...Array.from({length: 4}, () => read(true))];
    // The daemon answers between the readers' pieces: well within the watchdog's half minute.
    const started = Date.now();
    const greeting = await fetch(`${url}/`);
    assert.equal(greeting.status, 200);
    const waited = Date.now() - started;
    assert.ok(waited < 5000, `GET / waited ${waited} ms behind 8 readers of 5 MB`);
    for (const [index, {got, result}] of (await Promise.all(readers)).entries()) {
      const follows = index >= 4;
      // A plain reader gets what was held when it came; a follower, the rest too.
      assert.equal(got.stdout, 5_000_000 + (follows ? 4 : 0), `reader ${index}`);
      assert.equal(got.stderr, 588895, `reader ${index}`);
      assert.equal(got.skipped, 0);
      if (follows) assert.equal(result.state, 'succeeded');
    }
  });

  it('completes a character split between the head and a short tail for a follower who joins between its bytes', async () => {
    const {url} = await startTestDaemon();
    // 65,535 bytes, then two of the three bytes of "中": the head is full and the tail holds one byte.
    const id = await start(url, "head -c 65535 /dev/zero | tr '\\0' a; printf '\\344\\270'; sleep 1; printf '\\255\\n'");
    await new Promise((resolve) => setTimeout(resolve, 500));
    let text = '';
    await readOutput(target(url), id, true, {data: (_stream, data) => (text += data)});
    assert.equal(text, `${'a'.repeat(65535)}中\n`);
  });

  it('limits the followers of running jobs, per key and in all', async () => {
    const {url} = await startTestDaemon({KEYS});
    const id = await start(url, 'sleep 5', NARROW_SECRET);
    const controllers: AbortController[] = [];
    const follow = (secret: string) => {
      const controller = new AbortController();
      controllers.push(controller);
      return readOutput(target(url, secret), id, true, {data: () => {}}, controller.signal).catch((error: Error) => error);
    };
    const followers = Array.from({length: 32}, () => follow(NARROW_SECRET));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const refused = await follow(NARROW_SECRET);
    assert.match(String(refused), /HTTP 429: key "narrow" already follows 32 jobs' output/);
    // Another key still may; and the places come back when followers leave.
    const other = follow(TEST_SECRET);
    for (const controller of controllers.slice(0, 32)) controller.abort();
    await Promise.all(followers);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const again = follow(NARROW_SECRET);
    await cancelJob(target(url), id);
    assert.equal(((await other) as {state: string}).state, 'cancelled');
    assert.equal(((await again) as {state: string}).state, 'cancelled');
  });

  it('answers a cancel that comes after the command has ended with 409, and a bad list limit with 400', async () => {
    const {url} = await startTestDaemon();
    // The shell ends at once; a background child keeps the output open a moment.
    const id = await start(url, 'sleep 0.5 & echo quick');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const late = await jobsRequest(target(url), 'DELETE', `/jobs/${id}`);
    assert.deepEqual([late.status, late.body.reason], [409, 'job-finished']);
    const record = await eventually(async () => {
      const shown = await showJob(target(url), id);
      return shown.state === 'running' ? undefined : shown;
    });
    assert.deepEqual([record.state, record.exitCode, record.signal], ['succeeded', 0, null]);
    for (const limit of ['-1', '0', 'x', '1e3']) {
      const bad = await jobsRequest(target(url), 'GET', '/jobs', `limit=${limit}`);
      assert.deepEqual([bad.status, bad.body.reason], [400, 'bad-request'], limit);
    }
  });

  it('keeps at most 4,096 characters of a command, and lists at most 256', async () => {
    const {url} = await startTestDaemon();
    const long = `echo ${'x'.repeat(10_000)} >/dev/null`;
    const id = await start(url, long);
    const shown = await showJob(target(url), id);
    assert.deepEqual([shown.command.length, shown.commandLength], [4096, long.length]);
    const [listed] = await listJobs(target(url));
    assert.deepEqual([listed.command.length, listed.commandLength], [256, long.length]);
  });
});
