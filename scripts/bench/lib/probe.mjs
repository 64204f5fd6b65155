// One request through a target with a real client that checks the whole answer: status, body and, for
// gRPC, the message and grpc-status (grpc-js). The origination scenarios probe before every measured run, so
// a target that answers with errors (or with another body) is reported as failed instead of being timed,
// and the --check-verify mode uses the same probes to show that a wrong CA or server name is refused.
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { HTTP_BODY } from './upstreams.mjs';
import { GRPC_PATH, GRPC_REQUEST_PAYLOAD, GRPC_RESPONSE_PAYLOAD, encodeMsg, decodeMsg } from './grpc.mjs';

const TIMEOUT_MS = 5000;

/**
 * Probe `protocol` ('http' | 'http2' | 'grpc') on 127.0.0.1:port; with `caFile` the client itself speaks
 * TLS (the direct rows), verifying the upstream as `serverName`. Resolves on a correct answer, else throws
 * an error saying what came back.
 */
export function probe(protocol, port, { caFile, serverName = 'localhost', host = '127.0.0.1' } = {}) {
  switch (protocol) {
    case 'http':
      return probeHttp1(host, port, caFile, serverName);
    case 'http2':
      return probeHttp2(host, port, caFile, serverName);
    case 'grpc':
      return probeGrpc(host, port, caFile, serverName);
    default:
      throw new Error(`probe: unknown protocol ${protocol}`);
  }
}

function checkBody(what, status, body) {
  if (status !== 200 || body !== HTTP_BODY) {
    throw Object.assign(new Error(`${what}: expected 200 with the upstream's ${HTTP_BODY.length}-byte body, got ${status} ${JSON.stringify(body.slice(0, 120))}`), { answer: `HTTP ${status}` });
  }
}

function probeHttp1(host, port, caFile, servername) {
  const lib = caFile ? https : http;
  const tls = caFile ? { ca: readFileSync(caFile), servername, minVersion: 'TLSv1.3' } : {};
  return new Promise((resolve, reject) => {
    const req = lib.get({ host, port, path: '/', agent: false, timeout: TIMEOUT_MS, ...tls }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        try {
          checkBody(`HTTP/1.1 probe of port ${port}`, res.statusCode, body);
          resolve();
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`HTTP/1.1 probe of port ${port}: no answer in ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
  });
}

function probeHttp2(host, port, caFile, servername) {
  const url = `${caFile ? 'https' : 'http'}://${host}:${port}`;
  const tls = caFile ? { ca: readFileSync(caFile), servername, minVersion: 'TLSv1.3' } : {};
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, tls);
    const fail = (e) => {
      session.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new Error(`HTTP/2 probe of ${url}: no answer in ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    session.on('error', (e) => {
      clearTimeout(timer);
      fail(e);
    });
    const req = session.request({ ':path': '/' });
    let status = 0;
    let body = '';
    req.setEncoding('utf8');
    req.on('response', (h) => (status = h[':status']));
    req.on('data', (d) => (body += d));
    req.on('error', (e) => {
      clearTimeout(timer);
      fail(e);
    });
    req.on('end', () => {
      clearTimeout(timer);
      session.close();
      try {
        checkBody(`HTTP/2 probe of ${url}`, status, body);
        resolve();
      } catch (e) {
        reject(e);
      }
    });
  });
}

function probeGrpc(host, port, caFile, servername) {
  const creds = caFile ? grpc.credentials.createSsl(readFileSync(caFile)) : grpc.credentials.createInsecure();
  const options = caFile ? { 'grpc.ssl_target_name_override': servername, 'grpc.default_authority': servername } : {};
  const client = new grpc.Client(`${host}:${port}`, creds, options);
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      GRPC_PATH,
      (msg) => encodeMsg(msg),
      (buf) => decodeMsg(buf).toString(),
      GRPC_REQUEST_PAYLOAD,
      new grpc.Metadata(),
      { deadline: Date.now() + TIMEOUT_MS },
      (err, reply) => {
        client.close();
        if (err) {
          const answer = `grpc-status ${err.code} ${grpc.status[err.code] ?? '?'}`;
          return reject(Object.assign(new Error(`gRPC probe of ${host}:${port}: ${answer}: ${err.details}`), { answer }));
        }
        if (reply !== GRPC_RESPONSE_PAYLOAD) return reject(new Error(`gRPC probe of ${host}:${port}: unexpected reply ${JSON.stringify(reply)}`));
        resolve();
      },
    );
  });
}
