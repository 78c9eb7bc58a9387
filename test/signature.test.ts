import fc from 'fast-check';
import assert from 'node:assert/strict';
import {createHmac} from 'node:crypto';
import {execFileSync} from 'node:child_process';
import {readFileSync} from 'node:fs';
import {describe, it} from 'node:test';
import {checkAuthHeaders, matchingKey, sign, signRequest} from '../src/protocol/signature.js';

const signatureMatches = (secrets: string[], ...rest: Parameters<typeof matchingKey> extends [unknown, ...infer R] ? R : never) => matchingKey(secrets.map((secret) => ({secret})), ...rest) !== undefined;

interface Vector {
  secret: string;
  method: string;
  path: string;
  nonce: string;
  timestamp: string;
  body: string;
  signature: string;
}

const {vectors} = JSON.parse(readFileSync(new URL('../../shared/protocol-vectors.json', import.meta.url), 'utf8')) as {vectors: Vector[]};

describe('HMAC-SHA1 signatures as DataFlux Func computes them', () => {
  it('has the shared vectors to check against', () => assert.ok(vectors.length >= 4));

  for (const vector of vectors) {
    it(`signs ${JSON.stringify(vector.body).slice(0, 50)}`, () => {
      assert.equal(sign(vector.secret, vector.method, vector.path, vector.nonce, vector.timestamp, vector.body), vector.signature);
      assert.equal(sign(vector.secret, vector.method, vector.path, vector.nonce, vector.timestamp, Buffer.from(vector.body)), vector.signature);
    });

    it(`verifies ${vector.signature} in upper and lower case over the raw bytes`, () => {
      for (const signature of [vector.signature, vector.signature.toLowerCase()]) {
        const check = checkAuthHeaders({'x-auth-nonce': vector.nonce, 'x-auth-timestamp': vector.timestamp, 'x-auth-signature': signature});
        assert.ok(check.ok);
        assert.ok(signatureMatches([vector.secret], check.signature, 'POST', '/shell', check.nonce, check.timestamp, Buffer.from(vector.body)));
        assert.ok(!signatureMatches(['another-secret'], check.signature, 'POST', '/shell', check.nonce, check.timestamp, Buffer.from(vector.body)));
        assert.ok(!signatureMatches([vector.secret], check.signature, 'POST', '/other', check.nonce, check.timestamp, Buffer.from(vector.body)));
      }
    });
  }

  it('signs and verifies the vectors without one-shot hashing, as on Node 20.11 (createHmac)', () => {
    // A Node without crypto.hash, made by deleting it before the module loads.
    const script = `
      import {createRequire} from 'node:module';
      delete createRequire(import.meta.url)('node:crypto').hash;
      const {checkAuthHeaders, sign, matchingKey} = await import(${JSON.stringify(new URL('../src/protocol/signature.ts', import.meta.url).href)});
      const vectors = JSON.parse(process.argv[1]);
      console.log(JSON.stringify(vectors.map((v) => {
        const check = checkAuthHeaders({'x-auth-nonce': v.nonce, 'x-auth-timestamp': v.timestamp, 'x-auth-signature': v.signature.toLowerCase()});
        return [sign(v.secret, v.method, v.path, v.nonce, v.timestamp, v.body), matchingKey([{secret: v.secret}], check.signature, 'POST', '/shell', v.nonce, v.timestamp, Buffer.from(v.body)) !== undefined];
      })));`;
    const output = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, JSON.stringify(vectors)], {encoding: 'utf8'});
    assert.deepEqual(JSON.parse(output), vectors.map((vector) => [vector.signature, true]));
  });

  it('equals createHmac for any key, nonce, timestamp and body (keys longer than a SHA-1 block too)', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({maxLength: 20}), fc.string({minLength: 60, maxLength: 200}), fc.string({unit: 'binary', maxLength: 80})),
        fc.string({maxLength: 70}),
        fc.string({maxLength: 14}),
        fc.oneof(fc.string({unit: 'binary', maxLength: 300}), fc.uint8Array({maxLength: 5000})),
        (secret, nonce, timestamp, body) => {
          const expected = createHmac('sha1', secret).update(`POST\n/shell\n${nonce}\n${timestamp}\n`).update(body).digest('hex').toUpperCase();
          assert.equal(sign(secret, 'POST', '/shell', nonce, timestamp, body), expected);
        },
      ),
      {numRuns: 2000},
    );
  });

  it('accepts a signature made with any of several keys', () => {
    const v = vectors[0];
    const check = checkAuthHeaders({'x-auth-nonce': v.nonce, 'x-auth-timestamp': v.timestamp, 'x-auth-signature': v.signature});
    assert.ok(check.ok);
    assert.ok(signatureMatches(['old-key', v.secret], check.signature, 'POST', '/shell', v.nonce, v.timestamp, Buffer.from(v.body)));
  });

  it('makes fresh nonces and whole-second timestamps like Func', () => {
    const a = signRequest('k', 'POST', '/shell', '{}', 1_700_000_000_500);
    const b = signRequest('k', 'POST', '/shell', '{}', 1_700_000_000_500);
    assert.match(a['X-Auth-Nonce'], /^[0-9a-f]{32}$/);
    assert.notEqual(a['X-Auth-Nonce'], b['X-Auth-Nonce']);
    assert.equal(a['X-Auth-Timestamp'], '1700000000');
    assert.match(a['X-Auth-Signature'], /^[0-9A-F]{40}$/);
  });

  it('checks the header format before any HMAC work', () => {
    const good = {'x-auth-nonce': '0123456789abcdef0123456789abcdef', 'x-auth-timestamp': '1700000000', 'x-auth-signature': 'A'.repeat(40)};
    const cases: [Record<string, string | string[] | undefined>, string, RegExp][] = [
      [{...good, 'x-auth-nonce': undefined}, 'missing-header', /X-Auth-Nonce/],
      [{...good, 'x-auth-timestamp': ''}, 'missing-header', /X-Auth-Timestamp/],
      [{...good, 'x-auth-signature': undefined}, 'missing-header', /X-Auth-Signature/],
      [{...good, 'x-auth-signature': 'A'.repeat(39)}, 'malformed-header', /X-Auth-Signature/],
      [{...good, 'x-auth-signature': 'G'.repeat(40)}, 'malformed-header', /X-Auth-Signature/],
      [{...good, 'x-auth-signature': 'A'.repeat(4000)}, 'malformed-header', /X-Auth-Signature/],
      [{...good, 'x-auth-timestamp': '17e8'}, 'malformed-header', /X-Auth-Timestamp/],
      [{...good, 'x-auth-timestamp': '-1'}, 'malformed-header', /X-Auth-Timestamp/],
      [{...good, 'x-auth-nonce': 'short'}, 'malformed-header', /X-Auth-Nonce/],
      [{...good, 'x-auth-nonce': 'a b'.repeat(10)}, 'malformed-header', /X-Auth-Nonce/],
      [{...good, 'x-auth-nonce': [good['x-auth-nonce'], good['x-auth-nonce']]}, 'malformed-header', /more than once/],
    ];
    for (const [headers, reason, message] of cases) {
      const check = checkAuthHeaders(headers);
      assert.equal(check.ok, false, JSON.stringify(headers));
      if (!check.ok) {
        assert.equal(check.reason, reason);
        assert.match(check.message, message);
      }
    }
  });
});
