// Preloaded (`node -r`) into the stock nexrender worker so it runs on Linux without After
// Effects: @nexrender/core's binary auto-detection has no Linux entry and throws even when
// --binary is given, so give it an empty list; and turn its analytics off (it forks a process
// that would post to an outside host). Nothing else of the worker is changed.
'use strict'
const autofind = require('@nexrender/core/src/helpers/autofind')
autofind.defaultPaths.linux = autofind.defaultPaths.linux || []

const core = require('@nexrender/core')
const init = core.init
core.init = settings => init(Object.assign({}, settings, { noAnalytics: true }))
