import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {BodyBudget, type PendingBody} from '../src/daemon/request-body.js';

/** A body as readBody keeps one: dropping it gives its bytes back. */
function body(budget: BodyBudget, dropped: string[], name: string): PendingBody {
  const pending: PendingBody = {
    held: 0,
    drop() {
      dropped.push(name);
      budget.release(pending);
    },
  };
  return pending;
}

describe('body budget', () => {
  it('drops the bodies that began first to make room, and only as many as needed', () => {
    const budget = new BodyBudget(100);
    const dropped: string[] = [];
    const [a, b, c] = ['a', 'b', 'c'].map((name) => body(budget, dropped, name));
    assert.ok(budget.reserve(a, 40));
    assert.ok(budget.reserve(b, 40));
    assert.ok(budget.reserve(c, 30));
    assert.deepEqual(dropped, ['a']);
  });

  it('drops a body that is itself the oldest, and not the newer ones after it', () => {
    const budget = new BodyBudget(100);
    const dropped: string[] = [];
    const [a, b] = ['a', 'b'].map((name) => body(budget, dropped, name));
    assert.ok(budget.reserve(a, 10));
    assert.ok(budget.reserve(b, 10));
    assert.equal(budget.reserve(a, 95), false);
    assert.deepEqual(dropped, ['a']);
    assert.ok(budget.reserve(b, 80), 'b still holds its place');
  });
});
