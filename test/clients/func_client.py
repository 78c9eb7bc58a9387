"""Func's Sidecar client as DataFlux Func sends it: Python's requests, a signed POST /shell.

Usage: func_client.py URL SECRET BODY_FILE [--bad-auth]
Prints the reply's status and body as one JSON line, or the network error Func would show.
"""
import hashlib
import hmac
import json
import sys
import time
import uuid

import requests

url, secret, body_file = sys.argv[1:4]
with open(body_file, 'rb') as f:
    body = f.read()
nonce = uuid.uuid4().hex
timestamp = str(int(time.time()))
to_sign = '\n'.join(['POST', '/shell', nonce, timestamp, '']).encode('utf-8') + body
signature = hmac.new(secret.encode('utf-8'), to_sign, hashlib.sha1).hexdigest().upper()
if '--bad-auth' in sys.argv:
    signature = 'not-hex'
headers = {
    'Content-Type': 'application/json',
    'X-Auth-Nonce': nonce,
    'X-Auth-Timestamp': timestamp,
    'X-Auth-Signature': signature,
}
try:
    res = requests.post(url + '/shell', data=body, headers=headers, timeout=30)
    print(json.dumps({'status': res.status_code, 'body': res.json()}))
except requests.exceptions.RequestException as error:
    print(json.dumps({'error': type(error).__name__, 'message': str(error)}))
