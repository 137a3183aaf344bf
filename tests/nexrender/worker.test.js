// The stock nexrender worker (a real process, with a fake aerender) against edgefarm.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { createClient } = require('@nexrender/api')
const { SECRET, waitFor, startServer, startWorker, renderableJob, version, target } = require('./helpers')

console.log(`@nexrender/worker ${version('@nexrender/worker')} with @nexrender/core ${version('@nexrender/core')} against ${target()}`)

const addJob = async (client, data) => {
    const emitter = await client.addJob(data)
    emitter.on('error', () => {})
    return new Promise(resolve => emitter.once('created', resolve))
}

const stateOf = async (client, uid) => (await client.fetchJob(uid)).state

test('worker: a stock worker renders a job to finished', async t => {
    const server = await startServer(t)
    if (!server) return
    t.after(server.stop)
    const client = createClient({ host: server.host, secret: SECRET, polling: 100 })
    const job = await addJob(client, renderableJob())
    const worker = startWorker(server.host)
    t.after(() => worker.kill())
    try {
        await waitFor('the job to finish', async () => (await stateOf(client, job.uid)) === 'finished', 60000)
    } catch (e) {
        console.log(worker.log())
        throw e
    }
    const done = await client.fetchJob(job.uid)
    assert.equal(done.executor, '127.0.0.1', 'the executor is the worker\'s address')
    assert.ok(done.startedAt && done.finishedAt, 'startedAt and finishedAt are stamped')
    assert.match(worker.log(), /rendering progress 90%/, 'the fake aerender ran and its progress was read')
})

test('worker: a worker killed mid-render loses its job to another worker', async t => {
    const server = await startServer(t, ['--nexrender-timeout-ms', '1500'])
    if (!server) return
    t.after(server.stop)
    const client = createClient({ host: server.host, secret: SECRET, polling: 100 })
    const job = await addJob(client, renderableJob())
    // 10 frames of 2 s: far longer than the test waits, so it is killed while rendering.
    const doomed = startWorker(server.host, { frameMs: 2000 })
    t.after(() => doomed.kill('SIGKILL'))
    await waitFor('the first worker to start rendering', () => /rendering job/.test(doomed.log()), 60000)
    assert.equal(await stateOf(client, job.uid), 'started')
    await doomed.kill('SIGKILL')
    await waitFor('the lease to lapse', async () => (await stateOf(client, job.uid)) === 'queued', 10000)
    const rescuer = startWorker(server.host)
    t.after(() => rescuer.kill())
    try {
        await waitFor('the second worker to finish it', async () => (await stateOf(client, job.uid)) === 'finished', 60000)
    } catch (e) {
        console.log(rescuer.log())
        throw e
    }
    const v1 = await (await fetch(`${server.host}/v1/jobs/${job.uid}/tasks`, { headers: { authorization: `Bearer ${SECRET}` } })).json()
    const task = v1.tasks[0]
    assert.equal(task.attempts, 2, 'leased twice')
    assert.deepEqual(task.history.map(a => a.outcome), ['expired', 'completed'])
})
