#!/usr/bin/env node
// Stratum V1 test pool for gridminer, built on the npm package `stratum` (a real Stratum
// server framework). It hands out real-looking jobs (coinbase with extranonce room, merkle
// branches), judges every submission by rebuilding the header and hashing it (node's
// crypto), and records each submission as one JSON line so an independent checker
// (check_shares.py, Python hashlib) can verify every accepted share.
//
// It binds 127.0.0.1 on a port the OS picks and prints {"port": N} as its first stdout line.
//
// Options:
//   --out FILE              submissions, one JSON object per line (required)
//   --difficulty D          share difficulty (default 0.001)
//   --version-rolling MASK  answer mining.configure with this mask (hex); without it the
//                           framework answers "Method not found", as pools without BIP 310 do
//   --clean-after N         after N accepted shares of the current job, send a new job
//                           with clean_jobs=true (old jobs become stale)
//   --drop-after N          close the first connection after N accepted shares
//   --hostile               send malformed and hostile lines before the first job
//   --refuse-auth           answer mining.authorize with false
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const stratum = require('stratum');

const opts = { difficulty: 0.001, out: null, mask: null, cleanAfter: 0, dropAfter: 0, hostile: false, refuseAuth: false };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const next = () => argv[++i];
  if (a === '--out') opts.out = next();
  else if (a === '--difficulty') opts.difficulty = Number(next());
  else if (a === '--version-rolling') opts.mask = parseInt(next(), 16) >>> 0;
  else if (a === '--clean-after') opts.cleanAfter = Number(next());
  else if (a === '--drop-after') opts.dropAfter = Number(next());
  else if (a === '--hostile') opts.hostile = true;
  else if (a === '--refuse-auth') opts.refuseAuth = true;
  else { console.error('unknown option ' + a); process.exit(2); }
}
if (!opts.out) { console.error('--out FILE is required'); process.exit(2); }
fs.writeFileSync(opts.out, '');

const EXTRANONCE2_SIZE = 4;
const DIFF1 = 0xffff * Math.pow(2, 208);
const target = BigInt(Math.floor(DIFF1 / opts.difficulty));

// The framework has no mining.configure (BIP 310); a pool that offers version rolling
// adds it, exactly as the framework's README says to extend its commands.
if (opts.mask !== null) {
  stratum.Server.commands.configure = function (id, result) {
    return this.stratumSend({ id: id, result: result, error: null }, true, 'configure');
  };
}

const dsha = (buf) => crypto.createHash('sha256').update(crypto.createHash('sha256').update(buf).digest()).digest();
const hex = (n) => (n >>> 0).toString(16).padStart(8, '0');
const le32 = (hexBE) => Buffer.from(hexBE, 'hex').reverse();

let jobCounter = 0;
function newJob(height) {
  jobCounter += 1;
  const h = Buffer.alloc(3); h.writeUIntLE(height, 0, 3);
  const tag = Buffer.from('/gridminer-test/');
  // Coinbase: version, one input spending nothing, scriptSig = height push, an 8-byte push
  // holding extranonce1 + extranonce2, a tag; one output to a P2PKH script; locktime.
  const scriptLen = 4 + 1 + 8 + 1 + tag.length;
  const cb1 = '01000000' + '01' + '00'.repeat(32) + 'ffffffff' + scriptLen.toString(16).padStart(2, '0') +
    '03' + h.toString('hex') + '08';
  const cb2 = tag.length.toString(16).padStart(2, '0') + tag.toString('hex') + 'ffffffff' + '01' +
    '00f2052a01000000' + '1976a914' + crypto.randomBytes(20).toString('hex') + '88ac' + '00000000';
  return {
    id: 'j' + jobCounter.toString(16),
    prevhash: crypto.randomBytes(32).toString('hex'),
    coinb1: cb1,
    coinb2: cb2,
    branches: [0, 1, 2].map(() => crypto.randomBytes(32).toString('hex')),
    version: '20000000',
    nbits: '1d00ffff',
    ntime: hex(Math.floor(Date.now() / 1000)),
  };
}

function header(job, en1, en2, ntime, nonce, version) {
  let root = dsha(Buffer.from(job.coinb1 + en1 + en2 + job.coinb2, 'hex'));
  for (const b of job.branches) root = dsha(Buffer.concat([root, Buffer.from(b, 'hex')]));
  const prev = Buffer.from(job.prevhash, 'hex');
  for (let i = 0; i < 32; i += 4) prev.subarray(i, i + 4).reverse();
  return Buffer.concat([le32(hex(version)), prev, root, le32(ntime), le32(job.nbits), le32(nonce)]);
}

const server = stratum.Server.create({
  settings: { hostname: 'localhost', host: '127.0.0.1', port: 0, toobusy: 5000 },
});

const conns = new Map(); // socket id -> state
let connectionCount = 0;
let dropped = false;

function sendJob(socket, st, clean) {
  st.job = newJob(100000 + jobCounter);
  st.jobs.set(st.job.id, st.job);
  if (clean) { for (const id of st.jobs.keys()) if (id !== st.job.id) st.stale.add(id); }
  st.acceptedOnJob = 0;
  const j = st.job;
  server.sendToId(socket.id, 'notify', [j.id, j.prevhash, j.coinb1, j.coinb2, j.branches, j.version, j.nbits, j.ntime, clean]);
}

function sendHostile(socket) {
  const lines = [
    'this is not json',
    '[1,2,3]',
    '{"id":null,"method":"mining.notify","params":["x","zz","","",[],"20000000","1d00ffff","00000000",true]}',
    '{"id":null,"method":"mining.set_difficulty","params":[-5]}',
    '{"id":987654,"result":true,"error":null}',
    'x'.repeat(70000),
  ];
  socket.socket.write(lines.join('\n') + '\n');
  socket.socket.write(Buffer.from([0xff, 0xfe, 0x0a]));
}

server.on('mining', function (req, deferred, socket) {
  let st = conns.get(socket.id);
  if (!st) {
    connectionCount += 1;
    st = { conn: connectionCount, en1: crypto.randomBytes(4).toString('hex'), mask: 0, jobs: new Map(), stale: new Set(), job: null, acceptedOnJob: 0, accepted: 0 };
    conns.set(socket.id, st);
  }
  switch (req.method) {
    case 'configure': {
      const requested = parseInt((req.params[1] || {})['version-rolling.mask'] || '0', 16) >>> 0;
      st.mask = (requested & opts.mask) >>> 0;
      deferred.resolve([{ 'version-rolling': true, 'version-rolling.mask': hex(st.mask) }]);
      break;
    }
    case 'subscribe':
      deferred.resolve([opts.difficulty, 'sub' + st.conn, st.en1, EXTRANONCE2_SIZE]);
      break;
    case 'authorize':
      deferred.resolve([!opts.refuseAuth]);
      if (!opts.refuseAuth) {
        setImmediate(function () {
          if (opts.hostile) sendHostile(socket);
          server.sendToId(socket.id, 'set_difficulty', [opts.difficulty]);
          sendJob(socket, st, true);
        });
      }
      break;
    case 'submit': {
      const [user, jobId, en2, ntime, nonce, vbits] = req.params;
      const job = st.jobs.get(jobId);
      const rec = { conn: st.conn, user, job_id: jobId, extranonce1: st.en1, extranonce2: en2, ntime, nonce,
        version_bits: vbits === undefined ? null : vbits, mask: hex(st.mask), difficulty: opts.difficulty,
        job: job || null, current_job: st.job && st.job.id, accepted: false, reason: null };
      let version = 0;
      if (!job) rec.reason = 'unknown job';
      else if (st.stale.has(jobId)) rec.reason = 'stale';
      else if (typeof en2 !== 'string' || en2.length !== 2 * EXTRANONCE2_SIZE || !/^[0-9a-f]*$/.test(en2)) rec.reason = 'bad extranonce2';
      else if (!/^[0-9a-f]{8}$/.test(nonce) || !/^[0-9a-f]{8}$/.test(ntime)) rec.reason = 'bad nonce or ntime';
      else if (vbits !== undefined && (!/^[0-9a-f]{8}$/.test(vbits) || ((parseInt(vbits, 16) & ~st.mask) >>> 0) !== 0)) rec.reason = 'version bits outside the mask';
      else {
        version = job ? (((parseInt(job.version, 16) & ~st.mask) | (vbits === undefined ? 0 : parseInt(vbits, 16) & st.mask)) >>> 0) : 0;
        const hash = dsha(header(job, st.en1, en2, ntime, nonce, version));
        const value = BigInt('0x' + Buffer.from(hash).reverse().toString('hex'));
        rec.hash = Buffer.from(hash).reverse().toString('hex');
        if (value > target) rec.reason = 'high hash';
        else rec.accepted = true;
      }
      fs.appendFileSync(opts.out, JSON.stringify(rec) + '\n');
      if (rec.accepted) {
        deferred.resolve([true]);
        st.accepted += 1;
        st.acceptedOnJob += 1;
        if (opts.dropAfter && !dropped && st.accepted >= opts.dropAfter) {
          dropped = true;
          setImmediate(() => socket.socket.destroy());
        } else if (opts.cleanAfter && st.acceptedOnJob >= opts.cleanAfter) {
          setImmediate(() => sendJob(socket, st, true));
        }
      } else {
        const err = rec.reason === 'stale' ? stratum.Server.errors.STALE_WORK
          : rec.reason === 'high hash' ? stratum.Server.errors.HIGH_HASH : stratum.Server.errors.UNKNOWN;
        deferred.reject(err);
      }
      break;
    }
    default:
      deferred.reject(stratum.Server.errors.METHOD_NOT_FOUND);
  }
});

server.on('close', function (id) { conns.delete(id); });
server.on('mining.error', function () { /* malformed client input: the framework answers it */ });

server.listen().then(function () {
  process.stdout.write(JSON.stringify({ port: server.server.address().port }) + '\n');
});

process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
