// Ten operators watching one run: each page must still show every event within 500 ms of its
// timestamp (p95), and the pages must not flood the control plane with REST requests. Prints
// the figures for one page (the baseline, measured in the same run) and for ten.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { Host, browser, loggedIn } from './harness.mjs'

const EVENTS = 40
const PACE_MS = 150

function quantile(sorted, q) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]
}

describe('ten pages on one run', () => {
  let host, b

  before(async () => {
    host = await new Host({ mode: 'start', budget: 50 }).start()
    b = await browser()
  })

  after(async () => {
    await b?.close()
    await host?.stop()
  })

  /** Open `n` logged-in overview pages, stream EVENTS tool calls, and measure every page. */
  async function measure(n) {
    const pages = []
    for (let i = 0; i < n; i++) pages.push(await loggedIn(b, host))
    const requests = pages.map(() => 0)
    for (const [i, p] of pages.entries()) {
      await p.getByTestId('event-show').selectOption('all')
      await p.evaluate(() => {
        window.__seen = []
        const log = document.querySelector('[data-testid="event-list"]')
        new MutationObserver((records) => {
          const now = Date.now()
          for (const r of records) {
            for (const node of r.addedNodes) {
              if (node.nodeType === 1 && node.dataset.testid === 'event-row') {
                window.__seen.push({ type: node.dataset.type, ts: Number(node.dataset.ts), age: now - Number(node.dataset.ts) })
              }
            }
          }
        }).observe(log, { childList: true, subtree: true })
      })
      p.on('request', (r) => {
        if (new URL(r.url()).pathname.startsWith('/api/')) requests[i] += 1
      })
    }
    const started = Date.now()
    requests.fill(0)
    for (let k = 0; k < EVENTS; k++) {
      await host.agent({ do: 'tool', company: `Load ${k}` })
      await new Promise((r) => setTimeout(r, PACE_MS))
    }
    await new Promise((r) => setTimeout(r, 1500))
    const seconds = (Date.now() - started) / 1000
    const ages = []
    for (const p of pages) {
      const seen = (await p.evaluate(() => window.__seen)).filter((s) => s.type === 'tool_call' && s.ts >= started)
      assert.equal(seen.length, EVENTS, `a page showed ${seen.length} of ${EVENTS} tool calls`)
      ages.push(...seen.map((s) => s.age))
    }
    for (const p of pages) await p.context().close()
    ages.sort((a, c) => a - c)
    const perPage = requests.reduce((a, c) => a + c, 0) / n / seconds
    return { p50: quantile(ages, 0.5), p95: quantile(ages, 0.95), max: ages[ages.length - 1], perPage }
  }

  test('each event reaches all ten pages within 500 ms (p95); REST requests stay few', async () => {
    const one = await measure(1)
    const ten = await measure(10)
    const fmt = (r) => `p50 ${r.p50} ms, p95 ${r.p95} ms, max ${r.max} ms, ${r.perPage.toFixed(2)} REST requests/s per page`
    console.log(`event → DOM, 1 page (baseline): ${fmt(one)}`)
    console.log(`event → DOM, 10 pages:          ${fmt(ten)}`)
    console.log(`ratio 10 pages / 1 page: p95 ×${(ten.p95 / Math.max(1, one.p95)).toFixed(2)}`)
    assert.ok(ten.p95 <= 500, `p95 ${ten.p95} ms with ten pages`)
    // A refresh a second at most while events stream (four requests), never one per event.
    assert.ok(ten.perPage <= 4.5, `${ten.perPage.toFixed(2)} REST requests/s per page`)
  })
})
