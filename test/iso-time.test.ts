import assert from 'node:assert/strict';
import {it} from 'node:test';
import fc from 'fast-check';
import {isoTime} from '../src/common/iso-time.js';

it('writes a time exactly as Date#toISOString does, for years 0 to 9999', () => {
  const startOfYear0 = new Date('0000-01-01T00:00:00.000Z').getTime();
  const endOf9999 = new Date('9999-12-31T23:59:59.999Z').getTime();
  fc.assert(
    fc.property(fc.integer({min: startOfYear0, max: endOf9999}), (milliseconds) => {
      assert.equal(isoTime(milliseconds), new Date(milliseconds).toISOString());
    }),
    {numRuns: 20_000},
  );
  for (const milliseconds of [startOfYear0, endOf9999, 0, -1, Date.UTC(2024, 1, 29, 12, 0, 0, 7)]) {
    assert.equal(isoTime(milliseconds), new Date(milliseconds).toISOString());
  }
});

it('writes times that follow each other, within a minute and across minutes (the kept minute)', () => {
  const start = Date.UTC(2026, 11, 31, 23, 58, 30, 0);
  for (let milliseconds = start; milliseconds < start + 200_000; milliseconds += 7) {
    assert.equal(isoTime(milliseconds), new Date(milliseconds).toISOString());
  }
  for (const milliseconds of [start, start - 60_001, start, -59_999, -60_000, -60_001, 0]) {
    assert.equal(isoTime(milliseconds), new Date(milliseconds).toISOString());
  }
});
