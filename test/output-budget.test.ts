import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {CappedOutput, OutputBudget} from '../src/daemon/output-budget.js';

const bytes = (size: number, fill: string) => Buffer.alloc(size, fill);

describe('output budget', () => {
  it('keeps each stream within its limit and all of them within the budget', () => {
    const budget = new OutputBudget(100);
    const a = new CappedOutput(80, budget);
    const b = new CappedOutput(80, budget);
    a.push(bytes(70, 'a'));
    b.push(bytes(70, 'b'));
    assert.ok(budget.held <= 100);
    assert.equal(a.kept + b.kept, budget.held);
    assert.deepEqual([a.total, b.total], [70, 70]);
    assert.ok(a.truncated && b.kept === 50 && a.kept === 50, `${a.kept} ${b.kept}: the larger holder gave way to an even share`);
  });

  it('cuts the largest holder from its end, so what it keeps is still where its output began', () => {
    const budget = new OutputBudget(10);
    const big = new CappedOutput(100, budget);
    big.push(Buffer.from('0123456789'));
    const small = new CappedOutput(100, budget);
    small.push(Buffer.from('ab'));
    assert.equal(small.take(), 'ab');
    assert.equal(big.take(), '01234567');
    assert.equal(budget.held, 0, 'taken output leaves the budget');
  });

  it('counts what it cannot keep, and never holds more than the budget over many commands', () => {
    const budget = new OutputBudget(1000);
    const outputs = Array.from({length: 20}, () => new CappedOutput(10_000, budget));
    for (let round = 0; round < 50; round++) for (const output of outputs) output.push(bytes(37, 'x'));
    assert.ok(budget.held <= 1000);
    assert.equal(outputs.reduce((sum, output) => sum + output.kept, 0), budget.held);
    assert.ok(outputs.every((output) => output.total === 50 * 37 && output.truncated));
    for (const output of outputs) output.take();
    assert.equal(budget.held, 0);
  });
});

describe('output cut by the budget', () => {
  it('keeps a prefix: once cut, nothing later is kept, even when room comes back', () => {
    const budget = new OutputBudget(10);
    const other = new CappedOutput(100, budget);
    other.push(Buffer.from('xxxxxxxxxx'));
    const output = new CappedOutput(100, budget);
    output.push(Buffer.from('123456789012'));
    other.take();
    output.push(Buffer.from('abc'));
    assert.equal(output.take(), '12345', 'the start of the output, with no gap');
    assert.equal(output.total, 15);
  });

  it('does not end in half a UTF-8 character', () => {
    const budget = new OutputBudget(4);
    const output = new CappedOutput(100, budget);
    output.push(Buffer.from('abcé€'));
    assert.equal(output.take(), 'abc');
  });
});
