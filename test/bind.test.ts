import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {DEFAULT_BIND, parseBindList} from '../src/config/bind.js';

describe('BIND lists', () => {
  it('parses the manual default', () => {
    assert.deepEqual(parseBindList(DEFAULT_BIND), [
      {host: '127.0.0.1', port: 8099, tls: false, label: '127.0.0.1:8099'},
      {host: '172.17.0.1', port: 8099, tls: false, label: '172.17.0.1:8099'},
    ]);
  });

  it('serves https:// entries over TLS, and takes http:// as plain', () => {
    assert.deepEqual(parseBindList('https://172.17.0.1:8099, http://127.0.0.1:8099,HTTPS://[::1]:9000'), [
      {host: '172.17.0.1', port: 8099, tls: true, label: 'https://172.17.0.1:8099'},
      {host: '127.0.0.1', port: 8099, tls: false, label: '127.0.0.1:8099'},
      {host: '::1', port: 9000, tls: true, label: 'https://[::1]:9000'},
    ]);
    assert.throws(() => parseBindList('ftp://127.0.0.1:21'), /"ftp:\/\/127\.0\.0\.1:21" is not host:port or https:\/\/host:port/);
  });

  it('takes IPv6 in brackets, host names, spaces around items and port 0', () => {
    assert.deepEqual(
      parseBindList(' [::1]:8099 , localhost:9000,0.0.0.0:0').map((a) => a.label),
      ['[::1]:8099', 'localhost:9000', '0.0.0.0:0'],
    );
    assert.equal(parseBindList('[::]:1')[0].host, '::');
  });

  for (const [input, message] of [
    ['', /empty/],
    ['127.0.0.1', /not host:port/],
    ['0.0.0.0.8099', /not host:port/],
    ['127.0.0.1:8099,', /empty item/],
    ['127.0.0.1:70000', /port 70000/],
    ['::1:8099', /not host:port/],
    ['[127.0.0.1]:80', /not an IP/],
    ['999.1.1.1:80', /not an IP/],
    ['bad_host:80', /not an IP/],
    ['127.0.0.1:8099,127.0.0.1:8099', /listed twice/],
  ] as const) {
    it(`refuses ${JSON.stringify(input)}`, () => assert.throws(() => parseBindList(input), message));
  }
});
