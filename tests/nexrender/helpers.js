// Shared by the tests: a spawned `edgefarm serve`, a fake After Effects install, and the stock
// nexrender worker run as its own process. Everything talks to 127.0.0.1 only.
'use strict'
const { spawn } = require('child_process')
const fs = require('fs')
const net = require('net')
const os = require('os')
const path = require('path')

const SECRET = 'nexrender-test-secret'
const BIN = process.env.EDGEFARM_BIN

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

/** Starts `edgefarm serve` in memory with extra flags; `stop()` ends it. */
const startServer = async (flags = []) => {
    if (!BIN) throw new Error('set EDGEFARM_BIN to the edgefarm binary (cargo build first)')
    const port = await freePort()
    const host = `http://127.0.0.1:${port}`
    const child = spawn(BIN, ['serve', '--memory', '--listen', `127.0.0.1:${port}`, '--secret', SECRET, ...flags], {
        stdio: ['ignore', 'ignore', 'inherit'],
        env: Object.assign({}, process.env, { RUST_LOG: 'warn' }),
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
const renderableJob = (extra = {}) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgefarm-project-'))
    const project = path.join(dir, 'project.aep')
    fs.writeFileSync(project, 'not really an After Effects project')
    return Object.assign({ template: { src: `file://${project}`, name: 'project.aep', composition: 'main' } }, extra)
}

/**
 * Runs the stock `nexrender-worker` binary (its own process group, so a SIGKILL takes its
 * aerender child too) against `host`.
 */
const startWorker = (host, { frameMs = 20, workpath } = {}) => {
    const ae = fakeAfterEffects()
    const bin = require.resolve('@nexrender/worker/src/bin.js')
    const args = ['-r', path.join(__dirname, 'preload.js'), bin,
        '--host', host, '--secret', SECRET, '--binary', ae.binary,
        '--workpath', workpath || fs.mkdtempSync(path.join(os.tmpdir(), 'edgefarm-work-')),
        '--polling', '200', '--no-license']
    const child = spawn(process.execPath, args, {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: Object.assign({}, process.env, { FAKE_AERENDER_FRAME_MS: String(frameMs), NEXRENDER_ENABLE_AELOG_PROJECT_FOLDER: '1' }),
    })
    let log = ''
    child.stdout.on('data', d => { log += d })
    child.stderr.on('data', d => { log += d })
    const exited = new Promise(resolve => child.once('exit', resolve))
    return {
        log: () => log,
        kill: async (signal = 'SIGTERM') => {
            try { process.kill(-child.pid, signal) } catch (_) { /* already gone */ }
            await exited
        },
    }
}

const version = name => require(`${name}/package.json`).version

module.exports = { SECRET, delay, waitFor, startServer, startWorker, renderableJob, version }
