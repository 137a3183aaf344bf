// The current nexrender worker's loop (nexrender-worker 1.6x, on @nexrender/core 1.63.x and
// @nexrender/api), rebuilt from its documented behaviour because the npm registry here only
// serves the old 1.8.16 worker, which claims by listing instead. Run as its own process with
// `node -r ./preload.js worker16.js` and these variables:
//   WORKER16_HOST, WORKER16_SECRET, WORKER16_BINARY, WORKER16_WORKPATH, WORKER16_NAME (optional)
//
// What it does, as that worker does:
// - picks up a job (`GET /jobs/pickup`), then PUTs the whole job with `state: "started"`;
//   a refused start abandons the job;
// - reports progress with the status projection (`getRenderingStatus`), awaited inside the
//   callback, errors caught;
// - when aerender prints an error, appends it to `job.error` and PUTs the status projection
//   (state still `started`) WITHOUT awaiting or catching it: a refusal there is an unhandled
//   rejection, which ends the Node process (exit 1);
// - then PUTs `finished`, or `error` with `errorAt` and the error list, and takes the next job.
'use strict'
const { createClient } = require('@nexrender/api')
const { init, render } = require('@nexrender/core')
const { getRenderingStatus } = require('@nexrender/types/job')

const env = name => process.env[name] || undefined
const client = createClient({ host: env('WORKER16_HOST'), secret: env('WORKER16_SECRET'), name: env('WORKER16_NAME') })
const settings = init({
    process: 'nexrender-worker',
    binary: env('WORKER16_BINARY'),
    workpath: env('WORKER16_WORKPATH'),
    stopOnError: false,
    addLicense: false,
    logger: console,
})
const delay = ms => new Promise(resolve => setTimeout(resolve, ms))

const renderOne = async job => {
    job.state = 'started'
    job.startedAt = new Date()
    try {
        await client.updateJob(job.uid, job)
    } catch (err) {
        console.log(`[${job.uid}] start refused, job abandoned: ${err.message}`)
        return
    }
    job.onRenderProgress = async current => {
        try {
            await client.updateJob(current.uid, getRenderingStatus(current))
        } catch (err) {
            console.log(`[${current.uid}] progress report refused: ${err.message}`)
        }
    }
    job.onRenderError = (_, err) => {
        job.error = [].concat(job.error || [], [err.toString()])
        // Fired and forgotten, as the 1.6x worker does.
        client.updateJob(job.uid, getRenderingStatus(job))
    }
    try {
        const done = await render(job, settings)
        done.state = 'finished'
        done.finishedAt = new Date()
        await client.updateJob(done.uid, getRenderingStatus(done))
        console.log(`[${job.uid}] finished`)
    } catch (err) {
        job.error = [].concat(job.error || [], [err.toString()])
        job.errorAt = new Date()
        job.state = 'error'
        try {
            await client.updateJob(job.uid, getRenderingStatus(job))
        } catch (e) {
            console.log(`[${job.uid}] error report refused: ${e.message}`)
        }
        console.log(`[${job.uid}] render failed, taking the next job: ${err.message}`)
    }
}

const loop = async () => {
    for (;;) {
        let job = null
        try {
            job = await client.pickupJob()
        } catch (err) {
            console.log(`pickup failed: ${err.message}`)
        }
        if (job && job.uid) await renderOne(job)
        else await delay(200)
    }
}

loop()
