// The bounds on those who read a job's output: the places readers take (job-routes.ts), given back
// however a reader goes, and the live output that stalled followers hold (output-reader.ts).
import assert from 'node:assert/strict';
import {writeFileSync} from 'node:fs';
import {request, type ClientRequest, type IncomingMessage} from 'node:http';
import {connect} from 'node:net';
import {join} from 'node:path';
import {after, describe, it} from 'node:test';
import {setFlagsFromString} from 'node:v8';
import {runInNewContext} from 'node:vm';
import {cancelJob, showJob} from '../src/client/jobs-client.js';
import {LineBuffer} from '../src/common/line-buffer.js';
import {FOLLOWERS_PER_KEY_MAX} from '../src/daemon/job-routes.js';
import type {JobRecordView, OutputTextEvent} from '../src/protocol/job-record.js';
import {signRequest} from '../src/protocol/signature.js';
import {eventually, signedPost, startTestDaemon, tempDir, TEST_SECRET} from './helpers.js';

const MiB = 1024 * 1024;
/** LIVE_HELD_BYTES in output-reader.ts: what all readers together hold of live output not yet written. */
const LIVE_HELD_BYTES = 64 * MiB;

async function start(url: string, command: string): Promise<string> {
  const reply = await signedPost(url, {command, wait: false});
  assert.equal(reply.status, 200, reply.raw);
  return reply.json.data.jobId as string;
}

async function finished(url: string, id: string, timeoutMs = 60_000): Promise<JobRecordView> {
  return eventually(async () => {
    const shown = await showJob({baseUrl: url, secretKey: TEST_SECRET}, id);
    return shown.state === 'running' || shown.state === 'queued' ? undefined : shown;
  }, timeoutMs, `job ${id} to end`);
}

/** A signed GET /jobs/{id}/output on a connection of its own; resolves when the answer's head has come. */
function openOutput(url: string, id: string, follow: boolean): Promise<{req: ClientRequest; res: IncomingMessage}> {
  const path = `/jobs/${id}/output`;
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}${follow ? '?follow=1' : ''}`, {method: 'GET', agent: false, headers: signRequest(TEST_SECRET, 'GET', path, '')}, (res) => resolve({req, res}));
    req.on('error', reject);
    req.end();
  });
}

/** The answer's NDJSON lines, read to its end. */
function readLines(res: IncomingMessage): Promise<OutputTextEvent[]> {
  const lines: OutputTextEvent[] = [];
  const buffer = new LineBuffer();
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => buffer.push(chunk, (line) => void lines.push(JSON.parse(line) as OutputTextEvent)));
  res.resume();
  return new Promise((resolve, reject) => {
    res.on('end', () => resolve(lines));
    res.on('error', reject);
  });
}

function resultOf(lines: OutputTextEvent[]): JobRecordView | undefined {
  const last = lines.at(-1);
  return last && 'result' in last ? last.result : undefined;
}

async function bodyOf(res: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of res) text += chunk;
  return text;
}

/** Collects garbage until the figure holds still (as test/job-store.test.ts does), then says what the process holds. */
async function heldMiB(gc: () => void): Promise<number> {
  for (let round = 0; round < 5; round++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const {heapUsed, arrayBuffers} = process.memoryUsage();
  return (heapUsed + arrayBuffers) / MiB;
}

describe("a reader's place among the followers", () => {
  it(`is given back when the reader drops its connection mid-stream, so that more than ${FOLLOWERS_PER_KEY_MAX} such readers of one key leave room for the next`, async () => {
    const {url, events} = await startTestDaemon();
    // 4 MB held, then the job runs on: each reader is cut off in the middle of its answer.
    const id = await start(url, "head -c 4000000 /dev/zero | tr '\\0' x; sleep 60");
    await eventually(async () => ((await showJob({baseUrl: url, secretKey: TEST_SECRET}, id)).stdoutBytes === 4_000_000 ? true : undefined), 20_000, 'the output held');
    const rounds = 2 * FOLLOWERS_PER_KEY_MAX + 1;
    for (let round = 1; round <= rounds; round++) {
      // Followers and plain readers in turn: every reader of the output takes a place.
      const follow = round % 2 === 1;
      // The daemon gives a place back when it sees the connection close: a moment after the client drops it.
      const deadline = Date.now() + 5_000;
      for (;;) {
        const {req, res} = await openOutput(url, id, follow);
        if (res.statusCode === 200) {
          await new Promise((resolve) => res.once('data', resolve));
          req.destroy();
          break;
        }
        const refusal = await bodyOf(res);
        if (Date.now() > deadline) assert.fail(`reader ${round} of ${rounds} (after ${round - 1} dropped mid-stream) was still refused after 5 s: HTTP ${res.statusCode} ${refusal}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    // One more follower is let in, and reads to the job's end.
    const last = await openOutput(url, id, true);
    assert.equal(last.res.statusCode, 200);
    const lines = readLines(last.res);
    await cancelJob({baseUrl: url, secretKey: TEST_SECRET}, id);
    assert.equal(resultOf(await lines)?.state, 'cancelled');
    assert.deepEqual(events.filter((event) => event.type === 'internal-error'), []);
  });

  it(`is given back for every answer of a pipelining connection that is reset, the queued ones included`, async () => {
    const {url} = await startTestDaemon();
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => void warnings.push(warning);
    process.on('warning', onWarning);
    after(() => process.off('warning', onWarning));
    const id = await start(url, 'sleep 60');
    const path = `/jobs/${id}/output`;
    // Requests one after another on one connection, before any answer: only the first answer
    // has the connection; the others wait behind it, each holding a place.
    const pipelined = Array.from({length: FOLLOWERS_PER_KEY_MAX + 8}, () => {
      const headers = Object.entries(signRequest(TEST_SECRET, 'GET', path, '')).map(([name, value]) => `${name}: ${value}\r\n`).join('');
      return `GET ${path}?follow=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`;
    }).join('');
    const connection = connect(Number(new URL(url).port), '127.0.0.1');
    connection.on('error', () => {});
    await new Promise((resolve) => connection.once('connect', resolve));
    connection.write(pipelined);
    await eventually(async () => {
      const {req, res} = await openOutput(url, id, true);
      req.destroy();
      return res.statusCode === 429 ? true : undefined;
    }, 5_000, 'the pipelined followers to hold every place of the key');
    connection.resetAndDestroy();
    // Every place back: as many followers as the key may have, at once, each let in.
    const followers = await eventually(async () => {
      const opened = await Promise.all(Array.from({length: FOLLOWERS_PER_KEY_MAX}, () => openOutput(url, id, true)));
      if (opened.every(({res}) => res.statusCode === 200)) return opened;
      for (const {req} of opened) req.destroy();
      return undefined;
    }, 5_000, `${FOLLOWERS_PER_KEY_MAX} followers let in after the reset`);
    for (const {req} of followers) req.destroy();
    await cancelJob({baseUrl: url, secretKey: TEST_SECRET}, id);
    // One close listener per connection, however many answers wait on it.
    assert.deepEqual(warnings.map((warning) => warning.name), []);
  });
});

describe('the live output a stalled follower holds', () => {
  it(`stays within ${LIVE_HELD_BYTES / MiB} MiB while the job prints four times that; the follower is then told how much it missed, and gets the result`, {timeout: 120_000}, async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // OUTPUT_LIMIT over the output: every byte reaches the follower; OUTPUT_BUDGET at its least: the job itself keeps 1 MiB.
    const {url, events} = await startTestDaemon({OUTPUT_LIMIT: 1024 * MiB, OUTPUT_BUDGET: MiB});
    const total = 4 * LIVE_HELD_BYTES;
    const gate = join(tempDir(), 'go');
    const id = await start(url, `until [ -e ${gate} ]; do sleep 0.05; done; head -c ${total} /dev/zero | tr '\\0' x`);
    const before = await heldMiB(gc);
    // In before the job prints (the answer's head comes once the daemon follows the job for it), and reads nothing.
    const {res} = await openOutput(url, id, true);
    assert.equal(res.statusCode, 200);
    res.pause();
    writeFileSync(gate, '');
    const record = await finished(url, id);
    assert.deepEqual([record.state, record.stdoutBytes], ['succeeded', total]);
    const grown = (await heldMiB(gc)) - before;
    console.log(`  ${total / MiB} MiB printed to a stalled follower: the process holds ${grown.toFixed(1)} MiB more than before it (heap and buffers, after GC)`);
    // The bound counts the pieces' bytes; a piece may keep all of the buffer it was read into, up to
    // two of dffs-spawn's frames (85 to 98 MiB measured here; 64 with Node's own spawning): twice the
    // bound and a margin, not the output (350 MiB without the bound).
    assert.ok(grown < (2 * LIVE_HELD_BYTES) / MiB + 16, `the process holds ${grown.toFixed(1)} MiB more with the follower stalled`);

    // The follower reads again: what was held for it, then how much it missed, then the result.
    const lines = await readLines(res);
    let data = 0;
    let skipped = 0;
    for (const line of lines) {
      if ('data' in line) data += line.data.length;
      if ('skipped' in line) skipped += line.skipped.bytes;
    }
    const skips = lines.filter((line) => 'skipped' in line);
    console.log(`  the follower read ${(data / MiB).toFixed(1)} MiB and was told it missed ${(skipped / MiB).toFixed(1)} MiB, in ${skips.length} line(s)`);
    assert.ok(skips.length > 0, 'the follower was not told it missed output');
    assert.equal(data + skipped, total, 'what the follower read and what it was told it missed make the whole output');
    assert.ok(data < total / 2, `the follower read ${data} bytes`);
    assert.deepEqual([resultOf(lines)?.id, resultOf(lines)?.state], [id, 'succeeded'], 'the last line is the result');
    assert.deepEqual(events.filter((event) => event.type === 'internal-error'), []);

    // What it held is given back: a new follower of a new job reads all its live output.
    const nextGate = join(tempDir(), 'go');
    const next = await start(url, `until [ -e ${nextGate} ]; do sleep 0.05; done; head -c 3000000 /dev/zero | tr '\\0' y`);
    const follower = await openOutput(url, next, true);
    const reading = readLines(follower.res);
    writeFileSync(nextGate, '');
    const read = await reading;
    assert.equal(resultOf(read)?.state, 'succeeded');
    assert.deepEqual(read.filter((line) => 'skipped' in line), []);
    assert.equal(read.reduce((sum, line) => sum + ('data' in line ? line.data.length : 0), 0), 3_000_000);
  });
});
