// In a process of its own: what the store's memory figure measures is the store alone.
import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {setFlagsFromString} from 'node:v8';
import {runInNewContext} from 'node:vm';
import {JobStore, OUTPUT_SAMPLE_BYTES} from '../src/daemon/jobs.js';
import type {CommandResult} from '../src/daemon/runner.js';

/**
 * Collects garbage until the figure holds still: buffers are freed by a sweeper that runs beside
 * the program, later on a busy machine, and counted until then.
 */
async function settle(gc: () => void): Promise<void> {
  for (let round = 0; round < 5; round++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('the job store', () => {
  const result = (stdoutBytes: number): CommandResult => ({stdout: '', stderr: '', exitCode: 0, signal: null, timedOut: false, truncated: false, durationMs: 1, stdoutBytes, stderrBytes: 0});

  it('keeps the head and the tail of a long output, and says how much went between', () => {
    const store = new JobStore({count: 10, seconds: 60, outputBytes: 1 << 30});
    const record = store.add({id: 'a', key: 'default', remote: '', command: 'x', wait: true, timeoutSeconds: 1});
    const total = 5 * OUTPUT_SAMPLE_BYTES + 123;
    for (let sent = 0; sent < total; sent += 1000) record.output('stdout', Buffer.alloc(Math.min(1000, total - sent), sent / 1000 % 26 + 97));
    const {head, skippedBytes, tail} = record.stdout.pieces();
    assert.equal(head.length, OUTPUT_SAMPLE_BYTES);
    assert.equal(tail.length, OUTPUT_SAMPLE_BYTES);
    assert.equal(skippedBytes, total - 2 * OUTPUT_SAMPLE_BYTES);
    assert.equal(tail.at(-1), (Math.ceil(total / 1000) - 1) % 26 + 97);
  });

  it('stays within its count and output bounds under 5,000 jobs of 256 KiB output each', async () => {
    const limits = {count: 1000, seconds: 3600, outputBytes: 32 * 1024 * 1024};
    const store = new JobStore(limits);
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    await settle(gc);
    const before = process.memoryUsage();
    const piece = Buffer.alloc(2 * OUTPUT_SAMPLE_BYTES, 120);
    for (let index = 0; index < 5000; index++) {
      const record = store.add({id: `job-${index}`, key: 'default', remote: '127.0.0.1', command: `echo ${index}`, wait: false, timeoutSeconds: 60});
      record.output('stdout', piece);
      record.output('stderr', piece);
      store.finish(record, result(piece.length));
      assert.ok(store.size <= limits.count, `${store.size} records`);
      assert.ok(store.finishedOutputBytes <= limits.outputBytes);
    }
    await settle(gc);
    const after = process.memoryUsage();
    const grownMiB = (after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers) / 1048576;
    console.log(`job store after 5,000 jobs: ${store.size} records, ${(store.finishedOutputBytes / 1048576).toFixed(1)} MiB of output kept, heap and buffers grown by ${grownMiB.toFixed(1)} MiB`);
    assert.ok(grownMiB < 32 + 16, `grew by ${grownMiB} MiB`);
    assert.equal(store.get('job-0'), undefined);
    assert.equal(store.get('job-4999')?.outputKept, true);
    assert.equal(store.get('job-4000')?.outputKept, false);
  });
});
