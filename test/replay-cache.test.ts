import assert from 'node:assert/strict';
import {appendFileSync, readFileSync, statSync} from 'node:fs';
import {describe, it} from 'node:test';
import {ReplayCache} from '../src/daemon/replay-cache.js';
import {ReplayJournal} from '../src/daemon/replay-journal.js';
import {tempDir} from './helpers.js';

const NOW = 1_800_000_000;

describe('replay cache', () => {
  it('remembers nonces and forgets those older than the window', () => {
    const cache = new ReplayCache(10);
    cache.add('a', 100, 0, NOW);
    assert.ok(cache.has('a'));
    cache.add('b', 500, 200, NOW);
    assert.ok(!cache.has('a'));
    assert.ok(cache.has('b'));
    assert.ok(!cache.belowFloor(100), 'expiry is not eviction: the timestamp check refuses those');
  });

  it('stays bounded, and refuses the timestamps of what it had to evict', () => {
    const cache = new ReplayCache(100);
    for (let i = 0; i < 1000; i++) cache.add(`n${i}`, NOW - 1000 + i, 0, NOW);
    assert.equal(cache.size, 100);
    assert.ok(!cache.has('n0'));
    assert.ok(cache.belowFloor(NOW - 1000), 'a replay of an evicted nonce carries an old timestamp');
    assert.ok(cache.belowFloor(NOW - 101));
    assert.ok(!cache.belowFloor(NOW - 100));
  });

  it('evicts the oldest timestamp first, whatever the order of arrival', () => {
    const cache = new ReplayCache(3);
    cache.add('late', NOW + 50, 0, NOW);
    cache.add('old', NOW - 50, 0, NOW);
    cache.add('now', NOW, 0, NOW);
    cache.add('next', NOW + 1, 0, NOW);
    assert.ok(!cache.has('old'));
    assert.ok(cache.has('late') && cache.has('now') && cache.has('next'));
    assert.ok(cache.belowFloor(NOW - 50) && !cache.belowFloor(NOW - 49));
  });

  it('never refuses a fresh request as stale, however many entries are signed in the future', () => {
    const cache = new ReplayCache(100);
    for (let i = 0; i < 60; i++) assert.ok(cache.add(`future${i}`, NOW + 200, NOW - 300, NOW));
    for (let second = 0; second < 30; second++) {
      const now = NOW + second;
      for (let i = 0; i < 10; i++) {
        assert.ok(!cache.belowFloor(now), `a request signed at ${now} is refused as stale`);
        assert.ok(cache.add(`fresh-${second}-${i}`, now, now - 300, now), `no room at ${now}`);
      }
      assert.ok(cache.floor <= now);
    }
    assert.ok(cache.has('future0'), 'entries of the current second or later are never evicted');
  });

  it('takes no more when full of entries it cannot evict, rather than forget one that could be replayed', () => {
    const cache = new ReplayCache(3);
    for (const nonce of ['a', 'b', 'c']) assert.ok(cache.add(nonce, NOW + 60, NOW - 300, NOW));
    assert.equal(cache.add('d', NOW, NOW - 300, NOW), false);
    assert.ok(cache.has('a') && !cache.belowFloor(NOW + 60), 'a replay of a is still refused as a replay');
    assert.ok(!cache.belowFloor(NOW), 'and fresh requests are not stale');
  });

  it('lists its entries oldest first', () => {
    const cache = new ReplayCache(10);
    cache.add('b', NOW + 2, 0, NOW);
    cache.add('a', NOW + 1, 0, NOW);
    assert.deepEqual([...cache.entries()], [['a', NOW + 1], ['b', NOW + 2]]);
  });
});

describe('replay journal', () => {
  it('carries accepted nonces and the floor into the next daemon, and forgets expired ones', () => {
    const dir = tempDir();
    const first = new ReplayCache(2);
    const journal = new ReplayJournal(dir, (error) => assert.fail(error));
    journal.load(first, NOW - 300, NOW);
    for (const [nonce, timestamp] of [['expired', NOW - 400], ['a', NOW - 10], ['b', NOW - 5], ['c', NOW]] as const) {
      first.add(nonce, timestamp, NOW - 300, NOW);
      journal.record(nonce, timestamp, first);
    }
    assert.ok(!first.has('a'), 'evicted from a full cache');
    // Rewritten as at the journal's own compaction: only live entries and the floor.
    journal.compact(first);
    journal.close();
    assert.equal(statSync(journal.path).mode & 0o777, 0o600);

    const second = new ReplayCache(10);
    new ReplayJournal(dir, (error) => assert.fail(error)).load(second, NOW - 300, NOW);
    assert.ok(!second.has('expired'));
    assert.ok(second.has('b') && second.has('c'));
    assert.ok(second.belowFloor(NOW - 10), 'the evicted nonce stays refused through its floor');
    assert.match(readFileSync(journal.path, 'latin1'), /^floor \d+\n/);
  });

  it('ignores lines it cannot read (a file cut short by a crash)', () => {
    const dir = tempDir();
    const journal = new ReplayJournal(dir, () => {});
    const cache = new ReplayCache();
    journal.load(cache, NOW - 300, NOW);
    journal.record('good-nonce-0001', NOW, cache);
    journal.close();
    appendFileSync(journal.path, `${NOW} half`);
    appendFileSync(journal.path, '\ngarbage line\n');
    const next = new ReplayCache();
    new ReplayJournal(dir, () => {}).load(next, NOW - 300, NOW);
    assert.ok(next.has('good-nonce-0001'));
    assert.equal(next.size, 2, 'the cut-short line is a valid nonce line of its own');
  });

  it('reports a journal it cannot write once, and keeps working', () => {
    const errors: string[] = [];
    const journal = new ReplayJournal('/nonexistent-dir-for-dffs-test', (error) => errors.push(error));
    const cache = new ReplayCache();
    journal.load(cache, NOW - 300, NOW);
    journal.record('n1-0000000000000', NOW, cache);
    assert.equal(errors.length, 1);
    assert.match(errors[0], /could be replayed once after a restart/);
  });
});
