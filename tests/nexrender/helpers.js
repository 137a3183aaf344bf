// Shared by the tests: a spawned `edgefarm serve` (or an external server, below), a fake After
// Effects install, and the stock nexrender worker run as its own process. Everything talks to
// 127.0.0.1 only.
//
// External server: with EDGEFARM_URL (+ EDGEFARM_SECRET) set, `startServer()` returns that
// server instead of spawning one (scripts/cloudflare-conformance points it at `wrangler dev`).
// A test needing server settings other than the ones that server runs with (declared with the
// variables the server itself reads: EDGEFARM_NEXRENDER_ORDERING, EDGEFARM_NEXRENDER_TIMEOUT_MS,
// EDGEFARM_NEXRENDER_MAX_ATTEMPTS, unset meaning the defaults) is skipped, naming the setting;
// the script starts the server once per set of settings the tests need. Tests pick up any
// queued job, so they need a server of their own: each test refuses to start on a server that
// holds nexrender jobs, and its `stop()` deletes every nexrender job there (the ones it made).
'use strict'
const { spawn } = require('child_process')
const fs = require('fs')
const net = require('net')
const os = require('os')
const path = require('path')

const EXTERNAL = (process.env.EDGEFARM_URL || '').replace(/\/+$/, '') || null
const SECRET = EXTERNAL ? process.env.EDGEFARM_SECRET : 'nexrender-test-secret'
if (EXTERNAL && !SECRET) throw new Error('EDGEFARM_URL is set: set EDGEFARM_SECRET to its farm secret too')
const BIN = process.env.EDGEFARM_BIN

/**
 * `edgefarm serve`'s nexrender settings: flag, the variable it also reads, default. A null
 * default is the runtime's own (the body limit differs between runtimes): a test that does not
 * name the setting runs whatever the server has.
 */
const SETTINGS = [
    ['--nexrender-ordering', 'EDGEFARM_NEXRENDER_ORDERING', 'oldest-first'],
    ['--nexrender-timeout-ms', 'EDGEFARM_NEXRENDER_TIMEOUT_MS', '600000'],
    ['--nexrender-max-attempts', 'EDGEFARM_NEXRENDER_MAX_ATTEMPTS', '3'],
    ['--nexrender-body-bytes', 'EDGEFARM_NEXRENDER_BODY_BYTES', null],
]

const delay = ms => new Promise(resolve => setTimeout(resolve, ms))

const freePort = () => new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
        const { port } = srv.address()
        srv.close(() => resolve(port))
    })
})

/** Polls `check` until it returns something truthy, or fails after `ms`. */
const waitFor = async (what, check, ms = 15000) => {
    const end = Date.now() + ms
    for (;;) {
        const got = await check()
        if (got) return got
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
        await delay(50)
    }
}

/** What a server started with `flags` runs with, as [flag, value] pairs (null: any value). */
const wanted = flags => SETTINGS.map(([flag, , byDefault]) => {
    const i = flags.indexOf(flag)
    return [flag, i >= 0 ? String(flags[i + 1]) : byDefault]
})

/** The external server's settings, from the variables it was started with. */
const external = () => SETTINGS.map(([flag, name, byDefault]) => [flag, process.env[name] || byDefault || 'its default'])

const api = (what, method, url) => fetch(url, { method, headers: { 'nexrender-secret': SECRET } }).then(async r => {
    if (!r.ok) throw new Error(`${what}: ${method} ${url} answered ${r.status} ${await r.text()}`)
    return r.json()
})

const jobsUrl = () => `${EXTERNAL}/api/v1/jobs`

/** Refuses a server that holds nexrender jobs this test did not create (see the top). */
const mustBeEmpty = async () => {
    const jobs = await api('listing the external server\'s jobs', 'GET', jobsUrl())
    if (jobs.length > 0) {
        throw new Error(`${EXTERNAL} already holds ${jobs.length} nexrender jobs: these tests pick up ` +
            'and delete every nexrender job there, so point them at a fresh server of their own')
    }
}

/** Deletes every nexrender job on the external server: the ones the test just made. */
const empty = async () => {
    for (const job of await api('listing the external server\'s jobs', 'GET', jobsUrl())) {
        await api('deleting a test\'s job', 'DELETE', `${jobsUrl()}/${job.uid}`)
    }
}

/**
 * Starts `edgefarm serve` in memory with extra flags; `stop()` ends it. Against an external
 * server (EDGEFARM_URL): that server, if it holds no nexrender job, with a `stop()` that deletes
 * the test's jobs; or, when it runs with other nexrender settings than `flags` ask for, the
 * test `t` is skipped with the reason printed, and the answer is null (the test then returns).
 */
const startServer = async (t, flags = []) => {
    if (EXTERNAL) {
        const has = new Map(external())
        const differ = wanted(flags).filter(([flag, value]) => value !== null && has.get(flag) !== value)
        if (differ.length > 0) {
            const reason = 'the external server runs with ' +
                differ.map(([flag]) => `${flag} ${has.get(flag)}`).join(', ') + '; this test needs ' +
                differ.map(([flag, value]) => `${flag} ${value}`).join(', ')
            console.log(`SKIP (external server settings): ${t.name}: ${reason}`)
            t.skip(reason)
            return null
        }
        await mustBeEmpty()
        return { host: EXTERNAL, stop: empty }
    }
    if (!BIN) throw new Error('set EDGEFARM_BIN to the edgefarm binary (cargo build first)')
    const port = await freePort()
    const host = `http://127.0.0.1:${port}`
    const child = spawn(BIN, ['serve', '--memory', '--listen', `127.0.0.1:${port}`, '--secret', SECRET, ...flags], {
        stdio: ['ignore', 'ignore', 'inherit'],
        // The nexrender settings are the flags' or the defaults, never the caller's environment.
        env: Object.assign(Object.fromEntries(Object.entries(process.env)
            .filter(([k]) => !SETTINGS.some(([, name]) => name === k))), { RUST_LOG: 'warn' }),
    })
    await waitFor('edgefarm serve to answer', async () => {
        try {
            return (await fetch(`${host}/api/v1/health`)).ok
        } catch (_) {
            return false
        }
    })
    return { host, stop: () => child.kill('SIGTERM') }
}

/** Where the tests run: the external server's URL, else the spawned binary. */
const target = () => EXTERNAL ? `external server ${EXTERNAL}` : BIN

/** A directory that looks like an After Effects install to @nexrender/core. */
const fakeAfterEffects = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgefarm-fake-ae-'))
    const binary = path.join(dir, 'aerender')
    fs.copyFileSync(path.join(__dirname, 'fake-ae', 'aerender'), binary)
    fs.chmodSync(binary, 0o755)
    fs.mkdirSync(path.join(dir, 'Scripts', 'Startup'), { recursive: true })
    fs.writeFileSync(path.join(dir, 'Scripts', 'Startup', 'commandLineRenderer.jsx'), '// stand-in\n')
    return { dir, binary }
}

/**
 * A valid job whose template is a local file the worker can "download". `name` is set because
 * @nexrender/core 1.63.3 names a downloaded file:// asset after its whole path otherwise.
 */
const renderableJob = (extra = {}, { failWith } = {}) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgefarm-project-'))
    const project = path.join(dir, 'project.aep')
    // `failWith`: the fake aerender prints this as aerender's error and exits 1 (fake-ae).
    fs.writeFileSync(project, 'not really an After Effects project\n' + (failWith ? `FAKE_AERENDER_ERROR: ${failWith}\n` : ''))
    return Object.assign({ template: { src: `file://${project}`, name: 'project.aep', composition: 'main' } }, extra)
}

/**
 * Runs the stock `nexrender-worker` binary (its own process group, so a SIGKILL takes its
 * aerender child too) against `host`. `loop16`: runs `worker16.js` instead, the 1.6x worker's
 * loop over the stock @nexrender/api and @nexrender/core, as `name` when given.
 */
const startWorker = (host, { frameMs = 20, workpath, loop16 = false, name } = {}) => {
    const ae = fakeAfterEffects()
    workpath = workpath || fs.mkdtempSync(path.join(os.tmpdir(), 'edgefarm-work-'))
    const bin = require.resolve('@nexrender/worker/src/bin.js')
    const args = loop16
        ? ['-r', path.join(__dirname, 'preload.js'), path.join(__dirname, 'worker16.js')]
        : ['-r', path.join(__dirname, 'preload.js'), bin,
            '--host', host, '--secret', SECRET, '--binary', ae.binary,
            '--workpath', workpath, '--polling', '200', '--no-license']
    const child = spawn(process.execPath, args, {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: Object.assign({}, process.env, {
            FAKE_AERENDER_FRAME_MS: String(frameMs),
            NEXRENDER_ENABLE_AELOG_PROJECT_FOLDER: '1',
            WORKER16_HOST: host,
            WORKER16_SECRET: SECRET,
            WORKER16_BINARY: ae.binary,
            WORKER16_WORKPATH: workpath,
            WORKER16_NAME: name || '',
        }),
    })
    let log = ''
    child.stdout.on('data', d => { log += d })
    child.stderr.on('data', d => { log += d })
    let exitCode = null
    const exited = new Promise(resolve => child.once('exit', (code, signal) => {
        exitCode = code === null ? signal : code
        resolve()
    }))
    return {
        log: () => log,
        /** null while it runs, else its exit code (or the signal that ended it). */
        exitCode: () => exitCode,
        kill: async (signal = 'SIGTERM') => {
            try { process.kill(-child.pid, signal) } catch (_) { /* already gone */ }
            await exited
        },
    }
}

const version = name => require(`${name}/package.json`).version

module.exports = { SECRET, delay, waitFor, startServer, startWorker, renderableJob, version, target }
