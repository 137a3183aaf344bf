// edgefarm's nexrender façade driven only through the stock @nexrender/api client.
'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { createClient } = require('@nexrender/api')
const { SECRET, delay, waitFor, startServer, renderableJob, version, target } = require('./helpers')

console.log(`@nexrender/api ${version('@nexrender/api')} against ${target()}`)

const job = (extra = {}) => Object.assign({ template: { src: 'file:///p/project.aep', composition: 'main' } }, extra)

// addJob's emitter polls the job's status until it ends; once the test's server is gone that
// poll fails and the emitter reports it as 'error', which is expected here.
const add = async (client, data) => {
    const emitter = await client.addJob(data)
    emitter.on('error', () => {})
    return new Promise(resolve => emitter.once('created', resolve))
}
// Every addJob emitter polls its job's status at `polling` ms until the job ends, however long the
// previous poll takes: at 100 ms, the 20 emitters of one test asked `wrangler dev` (one Durable
// Object, ~100 requests/s on a busy 2-core machine) for more than it serves, and the requests
// piled up until workerd ran out of file descriptors. Only the emitter test needs fast polls.
const connect = (host, extra = {}) => createClient(Object.assign({ host, secret: SECRET, polling: 1000 }, extra))

test('api: create, list, fetch, update, remove', async t => {
    const server = await startServer(t)
    if (!server) return
    t.after(server.stop)
    const client = connect(server.host)
    const created = await add(client, job({ tags: 'Gpu!, fast', custom: { keep: true } }))
    assert.equal(created.state, 'queued')
    assert.equal(created.tags, 'Gpu, fast', 'nexrender strips characters other than a-z0-9, and space, in either case')
    assert.equal(created.type, 'default')
    assert.deepEqual(created.actions, { prerender: [], postrender: [] })
    assert.match(created.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    assert.equal(created.creator, '127.0.0.1', 'the creator is the caller\'s address')
    const spoofer = connect(server.host, { headers: { 'x-edgefarm-peer': '203.0.113.9' } })
    assert.equal((await add(spoofer, job())).creator, '127.0.0.1', 'the server, not the client, sets x-edgefarm-peer')
    // Only this test's job, counted by uid: a list on a server others use may hold theirs too.
    const listed = await client.listJobs()
    assert.deepEqual(listed.filter(j => j.uid === created.uid).map(j => j.uid), [created.uid])
    const fetched = await client.fetchJob(created.uid)
    assert.deepEqual(fetched.custom, { keep: true })
    const updated = await client.updateJob(created.uid, { note: 'merged' })
    assert.equal(updated.note, 'merged')
    assert.deepEqual(updated.custom, { keep: true }, 'PUT is a shallow merge')
    assert.deepEqual(await client.removeJob(created.uid), { id: created.uid, removed: true })
    await assert.rejects(client.fetchJob(created.uid), /not_found/)
    await assert.rejects(client.removeJob(created.uid), /not_found/)
})

test('api: addJob emitter sees every state of a render', async t => {
    const server = await startServer(t)
    if (!server) return
    t.after(server.stop)
    const client = connect(server.host, { polling: 50 })
    const worker = connect(server.host, { name: 'render-box-1' })
    const emitter = await client.addJob(job())
    const events = []
    const progress = []
    for (const e of ['created', 'picked', 'started', 'render:dorender', 'finished', 'error']) {
        emitter.on(e, j => events.push([e, j.state]))
    }
    emitter.on('progress', (_, p) => progress.push(p))
    const seen = e => waitFor(`event ${e}`, () => events.some(([n]) => n === e))
    await seen('created')
    const picked = await worker.pickupJob()
    assert.equal(picked.executor, 'render-box-1')
    await seen('picked')
    await worker.updateJob(picked.uid, { state: 'started' })
    await seen('started')
    await worker.updateJob(picked.uid, { state: 'render:dorender', renderProgress: 42 })
    await waitFor('progress 42', () => progress.includes(42))
    await worker.updateJob(picked.uid, { state: 'finished' })
    await seen('finished')
    assert.deepEqual(events.map(([n]) => n), ['created', 'picked', 'started', 'render:dorender', 'finished'])
    assert.equal(progress[progress.length - 1], 100)
    const status = (await client.listJobs()).find(j => j.uid === picked.uid)
    assert.ok(status.finishedAt, 'finishedAt is stamped')
})

test('api: invalid jobs are 400, a wrong secret is 403', async t => {
    const server = await startServer(t)
    if (!server) return
    t.after(server.stop)
    const client = connect(server.host)
    await assert.rejects(client.addJob({}), /bad_request.*template\.src/)
    await assert.rejects(client.addJob(job({ assets: [{ type: 'image', src: 'x' }] })), /layerName or layerIndex/)
    await assert.rejects(client.addJob(job({ actions: { postrender: [{}] } })), /module/)
    const wrong = createClient({ host: server.host, secret: 'not-the-secret' })
    await assert.rejects(wrong.listJobs(), /forbidden/)
    await assert.rejects(wrong.pickupJob(), /forbidden/)
})

const pickAll = async (client, n) => {
    const out = []
    for (let i = 0; i < n; i++) out.push((await client.pickupJob()).uid)
    return out
}

for (const [ordering, expected] of [
    ['oldest-first', uids => uids],
    ['newest-first', uids => [...uids].reverse()],
    ['priority', uids => [uids[1], uids[3], uids[0], uids[2]]],
]) {
    test(`api: pickupJob with --nexrender-ordering ${ordering}`, async t => {
        const server = await startServer(t, ['--nexrender-ordering', ordering])
        if (!server) return
        t.after(server.stop)
        const client = connect(server.host, { name: 'w' })
        const uids = []
        for (const priority of [0, 10, 0, 5]) {
            uids.push((await add(client, job({ priority }))).uid)
            await delay(5)
        }
        assert.deepEqual(await pickAll(client, 4), expected(uids))
        assert.deepEqual(await client.pickupJob(), {}, 'nothing left: {} (not 204)')
    })
}

test('api: pickupJob random ordering still hands each job out once', async t => {
    const server = await startServer(t, ['--nexrender-ordering', 'random'])
    if (!server) return
    t.after(server.stop)
    const client = connect(server.host, { name: 'w' })
    for (let i = 0; i < 6; i++) await add(client, job())
    const got = await pickAll(client, 6)
    assert.equal(new Set(got).size, 6)
    assert.deepEqual(await client.pickupJob(), {})
})

test('api: pickupJob tags intersect, after trimming', async t => {
    const server = await startServer(t)
    if (!server) return
    t.after(server.stop)
    const client = connect(server.host, { name: 'w' })
    const tagged = async tags => (await add(client, job({ tags }))).uid
    const gpuFast = await tagged('gpu, fast')
    const cpu = await tagged('cpu')
    const untagged = await tagged('')
    assert.deepEqual(await client.pickupJob('mac'), {})
    assert.equal((await client.pickupJob('fast,mac')).uid, gpuFast)
    assert.equal((await client.pickupJob('cpu')).uid, cpu)
    assert.deepEqual(await client.pickupJob('gpu'), {}, 'a picked job is not picked again')
    assert.equal((await client.pickupJob()).uid, untagged, 'no selector: any queued job')
})

test('api: 50 concurrent pickupJob calls over 20 jobs never duplicate', async t => {
    const server = await startServer(t)
    if (!server) return
    t.after(server.stop)
    const client = connect(server.host)
    for (let i = 0; i < 20; i++) await add(client, job())
    const workers = Array.from({ length: 50 }, (_, i) => connect(server.host, { name: `w${i}` }))
    const got = await Promise.all(workers.map(w => w.pickupJob()))
    const uids = got.filter(j => j.uid).map(j => j.uid)
    assert.equal(uids.length, 20, 'every job handed out')
    assert.equal(new Set(uids).size, 20, 'never twice')
    assert.equal(got.filter(j => !j.uid).length, 30, 'the others get {}')
})

test('api: 10 concurrent claims by PUT started give exactly one winner', async t => {
    const server = await startServer(t)
    if (!server) return
    t.after(server.stop)
    const client = connect(server.host)
    const created = await add(client, renderableJob())
    const claims = Array.from({ length: 10 }, (_, i) =>
        connect(server.host, { name: `old-worker-${i}` })
            .updateJob(created.uid, Object.assign({}, created, { state: 'started' })))
    const results = await Promise.allSettled(claims)
    const won = results.filter(r => r.status === 'fulfilled')
    assert.equal(won.length, 1, 'one winner')
    for (const r of results.filter(r => r.status === 'rejected')) assert.match(r.reason.message, /conflict/)
    assert.equal((await client.fetchJob(created.uid)).executor, won[0].value.executor)
})

test('api: tags keep their case and match case-sensitively, as nexrender-server compares them', async t => {
    const server = await startServer(t)
    if (!server) return
    t.after(server.stop)
    const client = connect(server.host, { name: 'w' })
    const alpha = await add(client, job({ tags: 'Alpha,beta' }))
    assert.equal(alpha.tags, 'Alpha,beta', 'capitals survive')
    const other = await add(client, job({ tags: 'Ré-nder_1, GPU!' }))
    assert.equal(other.tags, 'Rnder1, GPU', 'what is outside [a-z0-9, ] in either case goes')
    assert.equal((await client.updateJob(other.uid, { tags: 'X-Y, gpu' })).tags, 'XY, gpu', 'a PUT is cleaned the same way')
    assert.deepEqual(await client.pickupJob('alpha'), {}, '`alpha` is not `Alpha`')
    assert.equal((await client.pickupJob('Alpha')).uid, alpha.uid)
    assert.equal((await client.pickupJob('XY')).uid, other.uid)
})

test('api: a client that is not the executor reports on a job; it ends a lease only with the override header', async t => {
    const server = await startServer(t)
    if (!server) return
    t.after(server.stop)
    const worker = connect(server.host, { name: 'render-box-1' })
    const dashboard = connect(server.host)
    const created = await add(dashboard, job())
    assert.equal((await worker.pickupJob()).uid, created.uid)
    await worker.updateJob(created.uid, { state: 'started' })

    const shown = await dashboard.updateJob(created.uid, { state: 'render:dorender', renderProgress: 42 })
    assert.deepEqual([shown.state, shown.renderProgress, shown.executor], ['render:dorender', 42, 'render-box-1'],
        'the report is shown; the lease stays with the executor')
    const fetched = await dashboard.fetchJob(created.uid)
    assert.deepEqual([fetched.state, fetched.renderProgress], ['render:dorender', 42])
    assert.equal((await dashboard.updateJob(created.uid, { note: 'checked by ops' })).note, 'checked by ops',
        'fields other than the state: always')
    assert.equal((await worker.updateJob(created.uid, { state: 'render:dorender', renderProgress: 50 })).renderProgress, 50,
        'the executor still holds the job and reports over it')

    await assert.rejects(dashboard.updateJob(created.uid, { state: 'started' }), /conflict/, 'a claim stays exclusive')
    await assert.rejects(dashboard.updateJob(created.uid, { state: 'queued' }), /conflict/, 'no silent take-over')
    await assert.rejects(dashboard.updateJob(created.uid, { state: 'finished' }), /conflict/)

    const admin = connect(server.host, { headers: { 'x-edgefarm-override': '1' } })
    assert.equal((await admin.updateJob(created.uid, { state: 'queued' })).state, 'queued', 'the override ends the lease')
    await assert.rejects(worker.updateJob(created.uid, { state: 'render:dorender', renderProgress: 60 }), /stale_lease/,
        'the executor learns it lost the job')
    const other = connect(server.host, { name: 'render-box-2' })
    assert.equal((await other.pickupJob()).uid, created.uid, 'queued again for any worker')
    assert.equal((await admin.updateJob(created.uid, { state: 'error', error: 'cancelled by ops' })).state, 'error')
    const ended = await dashboard.fetchJob(created.uid)
    assert.match([].concat(ended.error).join(), /cancelled by ops/)
})

// The limit every runtime's test server runs with (scripts/lib/nexrender-stock.sh starts the Worker
// and the Spin host with it): the Worker's default, 1.5 MiB, well above /v1's 1 MiB.
const BODY_LIMIT = 1572864

test('api: jobs with inline data: assets up to --nexrender-body-bytes, a 413 naming the limit above it', async t => {
    const server = await startServer(t, ['--nexrender-body-bytes', String(BODY_LIMIT)])
    if (!server) return
    t.after(server.stop)
    const client = connect(server.host)
    const inline = n => 'data:image/png;base64,' + 'iVBORw0KGgo'.repeat(Math.ceil(n / 11)).slice(0, n)
    const asset = n => ({ type: 'image', src: inline(n), layerName: 'logo.png' })
    // Just under the limit: what the limit lets through, the runtime's store must keep (on the
    // Worker, one Durable Object value of at most 2 MB holds the whole job record).
    const big = job({ assets: [asset(BODY_LIMIT - 4096)] })
    assert.ok(JSON.stringify(big).length > 1 << 20, 'over the 1 MiB of the /v1 routes')
    const created = await add(client, big)
    const fetched = await client.fetchJob(created.uid)
    assert.equal(fetched.assets[0].src, big.assets[0].src, 'stored whole')

    const over = job({ assets: [asset(BODY_LIMIT)] })
    await assert.rejects(client.addJob(over), e => {
        assert.match(e.message, /too_large/)
        assert.ok(e.message.includes(String(BODY_LIMIT)), `names the limit: ${e.message}`)
        assert.match(e.message, /EDGEFARM_NEXRENDER_BODY_BYTES/, 'and how to change it')
        return true
    })
    await assert.rejects(client.updateJob(created.uid, { assets: [asset(600 * 1024)].concat(fetched.assets) }),
        e => /too_large/.test(e.message) && e.message.includes(String(BODY_LIMIT)), 'a PUT cannot merge the job past it either')
    assert.equal((await client.fetchJob(created.uid)).assets.length, 1, 'the refused PUT changed nothing')
    assert.equal((await client.listJobs()).filter(j => j.uid !== created.uid).length, 0, 'the refused job was not stored')
})
