import assert from 'node:assert/strict';
import {PassThrough} from 'node:stream';
import {it} from 'node:test';
import {JsonBody} from '../src/daemon/json-body.js';

/** Strings that stress escaping: quotes, backslashes, controls, NULs, non-ASCII and surrogate pairs (whole and lone). */
function awkwardString(length: number, seed: number): string {
  const alphabet = ['a', '"', '\\', '\n', '\u0000', '\u001f', 'é', '中', '😀', '\ud800', '\udc00', '\u2028'];
  let state = seed;
  let text = '';
  while (text.length < length) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    text += alphabet[state % alphabet.length];
  }
  return text;
}

it('writes exactly what JSON.stringify writes, long strings included, with the right byte length', async () => {
  // 40,000: a long stdout beside a short stderr.
  for (const [length, seed] of [[0, 1], [10, 2], [40_000, 5], [300_000, 3], [700_001, 4]]) {
    const stdout = awkwardString(length, seed);
    const stderr = awkwardString(length / 3, seed + 7);
    const body = new JsonBody(['{"kwargs":{"stdout":', {string: stdout}, ',"stderr":', {string: stderr}, '}}']);
    const expected = JSON.stringify({kwargs: {stdout, stderr}});
    assert.equal(body.text(), expected);
    assert.equal(body.byteLength, Buffer.byteLength(expected));
    const sink = new PassThrough({highWaterMark: 1024});
    const chunks: Buffer[] = [];
    sink.on('data', (chunk: Buffer) => chunks.push(chunk));
    await body.writeTo(sink);
    assert.deepEqual([sink.listenerCount('drain'), sink.listenerCount('close')], [0, 0], 'no listener left behind');
    assert.equal(Buffer.concat(chunks).toString('utf8'), Buffer.from(expected, 'utf8').toString('utf8'));
  }
});
