// The current nexrender worker (1.6x) against edgefarm: on a failed render it re-sends
// `state: "started"` with the error, un-awaited, then `state: "error"` (issue 16). Both must be
// answered 2xx whatever order they arrive in: a refusal of the first is an unhandled rejection
// that ends the worker's process.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { createClient } = require('@nexrender/api')
const { getRenderingStatus } = require('@nexrender/types/job')
const { SECRET, waitFor, startServer, startWorker, renderableJob, version, target } = require('./helpers')

console.log(`the 1.6x worker's requests through @nexrender/api ${version('@nexrender/api')} and @nexrender/core ${version('@nexrender/core')} against ${target()}`)

const addJob = async (client, data) => {
    const emitter = await client.addJob(data)
    emitter.on('error', () => {})
    return new Promise(resolve => emitter.once('created', resolve))
}

const settle = p => p.then(value => ({ ok: true, value }), error => ({ ok: false, error }))

// The un-awaited PUT arrives before the `error` PUT, at the same time, or after it.
for (const [arrival, name] of [['before', 'render-16'], ['concurrently', undefined], ['after', 'render-16']]) {
    const who = name ? `named ${name}` : 'known by its address'
    test(`holder: a failed render's re-sent started (arriving ${arrival} the error PUT) and the error are both accepted, executor ${who}`, async t => {
        const server = await startServer(t)
        if (!server) return
        t.after(server.stop)
        const admin = createClient({ host: server.host, secret: SECRET, polling: 1000 })
        const worker = createClient({ host: server.host, secret: SECRET, name })
        const failing = await addJob(admin, renderableJob())
        const next = await addJob(admin, renderableJob())

        // What the worker does, request by request.
        const job = await worker.pickupJob()
        assert.equal(job.uid, failing.uid)
        job.state = 'started'
        job.startedAt = new Date()
        await worker.updateJob(job.uid, job)
        const renderError = 'Error: After Effects error: layer "logo" is missing'
        job.error = [].concat(job.error || [], [renderError])
        const reSent = getRenderingStatus(job)
        assert.equal(reSent.state, 'started', 'the re-sent PUT says started, with the error')
        job.error = job.error.concat(['Error: render failed'])
        job.errorAt = new Date()
        job.state = 'error'
        const failed = getRenderingStatus(job)
        let results
        if (arrival === 'before') {
            const first = settle(worker.updateJob(job.uid, reSent))
            results = [await first, await settle(worker.updateJob(job.uid, failed))]
        } else if (arrival === 'concurrently') {
            results = await Promise.all([settle(worker.updateJob(job.uid, reSent)), settle(worker.updateJob(job.uid, failed))])
        } else {
            const second = await settle(worker.updateJob(job.uid, failed))
            results = [await settle(worker.updateJob(job.uid, reSent)), second]
        }
        for (const [i, r] of results.entries()) {
            assert.ok(r.ok, `${['the re-sent started', 'the error'][i]} PUT is answered 2xx: ${r.ok || r.error.message}`)
        }

        const ended = await admin.fetchJob(job.uid)
        assert.equal(ended.state, 'error', 'the job ends in error')
        const text = [].concat(ended.error).join('\n')
        assert.match(text, /layer "logo" is missing/, 'with the error text')
        assert.ok(ended.errorAt, 'errorAt kept')
        const status = await admin.fetchJob(`${job.uid}/status`)
        assert.equal(status.state, 'error')
        assert.match(status.error, /layer "logo" is missing/)

        const again = await worker.pickupJob()
        assert.equal(again.uid, next.uid, 'the same executor picks up the next job')
        again.state = 'started'
        assert.equal((await worker.updateJob(again.uid, again)).state, 'started', 'and starts it')
    })
}

test('holder: every state the holder re-sends renews its lease, never 409', async t => {
    const server = await startServer(t)
    if (!server) return
    t.after(server.stop)
    const admin = createClient({ host: server.host, secret: SECRET, polling: 1000 })
    const worker = createClient({ host: server.host, secret: SECRET, name: 'render-16' })
    const created = await addJob(admin, renderableJob())
    const job = await worker.pickupJob()
    assert.equal(job.uid, created.uid)
    for (const state of ['started', 'started', 'render:dorender', 'started', 'render:dorender', 'render:postrender']) {
        const got = await worker.updateJob(job.uid, { state, renderProgress: 10 })
        assert.equal(got.state, state, `${state} re-sent by the holder`)
    }
    assert.equal((await worker.updateJob(job.uid, { state: 'finished' })).state, 'finished')
    for (const state of ['render:dorender', 'started', 'finished']) {
        const got = await worker.updateJob(job.uid, { state, renderProgress: 99 })
        assert.equal(got.state, 'finished', `a late ${state} from the last holder changes nothing`)
    }
    assert.equal((await worker.updateJob(job.uid, { state: 'error', error: 'post-render upload failed' })).state, 'error',
        'a re-sent end applies again: the holder\'s latest word')
})

test('worker: the 1.6x worker loop survives a failed render and renders the next job', async t => {
    const server = await startServer(t)
    if (!server) return
    t.after(server.stop)
    const client = createClient({ host: server.host, secret: SECRET, polling: 100 })
    const failing = await addJob(client, renderableJob({}, { failWith: 'the project is damaged' }))
    const next = await addJob(client, renderableJob())
    const worker = startWorker(server.host, { loop16: true, name: 'render-16' })
    t.after(() => worker.kill())
    const stateOf = async uid => (await client.fetchJob(uid)).state
    try {
        await waitFor('the failing job to end in error', async () => (await stateOf(failing.uid)) === 'error' || worker.exitCode() !== null, 60000)
        assert.equal(worker.exitCode(), null, 'the worker process is still running')
        await waitFor('the next job to finish', async () => (await stateOf(next.uid)) === 'finished' || worker.exitCode() !== null, 60000)
        assert.equal(worker.exitCode(), null, 'the worker process is still running')
    } catch (e) {
        console.log(worker.log())
        throw e
    }
    assert.match(worker.log(), /rendering reached an error: the project is damaged/, 'aerender\'s error reached the error callback')
    const failed = await client.fetchJob(failing.uid)
    assert.match([].concat(failed.error).join('\n'), /the project is damaged/)
    assert.equal(failed.executor, 'render-16')
    assert.equal((await client.fetchJob(next.uid)).executor, 'render-16')
})
