import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {ReplayCache} from '../src/daemon/replay-cache.js';

describe('replay cache', () => {
  it('remembers nonces and forgets those older than the window', () => {
    const cache = new ReplayCache(10);
    cache.add('a', 100, 0);
    assert.ok(cache.has('a'));
    cache.add('b', 500, 200);
    assert.ok(!cache.has('a'));
    assert.ok(cache.has('b'));
    assert.ok(!cache.belowFloor(100), 'expiry is not eviction: the timestamp check refuses those');
  });

  it('stays bounded, and refuses the timestamps of what it had to evict', () => {
    const cache = new ReplayCache(100);
    for (let i = 0; i < 1000; i++) cache.add(`n${i}`, 1000 + i, 0);
    assert.equal(cache.size, 100);
    assert.ok(!cache.has('n0'));
    assert.ok(cache.belowFloor(1000), 'a replay of an evicted nonce carries an old timestamp');
    assert.ok(cache.belowFloor(1899));
    assert.ok(!cache.belowFloor(1900));
  });
});
